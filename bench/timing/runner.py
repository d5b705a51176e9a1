"""`nnparity run`: time the benchmark matrix, one worker process per (backend, task) group.

The runner validates the selection (exit 2 with one line on a bad value),
asks each backend's worker to describe itself (variants, devices, which
variants fit which model), builds the matrix, then runs the groups one after
another so no two ever share the cores. It watches each worker's stream of
finished cells to print progress (cells done / total, ETA), kills a worker
that exceeds the group timeout, and always writes the group's pytest-benchmark
JSON, with error entries for what failed, hung or could not run. Ctrl-C stops
the current worker and keeps every finished record. This process never imports
a framework and never times anything itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import impls
from bench.options import InputError, add_task_options, choice_list, knob_overrides
from bench.results import write as records
from bench.results.paths import ROOT, RUNS
from bench.results.write import write_text_atomic
from bench.timing import environment
from bench.timing.matrix import (
    PHASES,
    PLANS,
    Group,
    MatrixError,
    Plan,
    Selection,
    build_groups,
    group_to_dict,
    keyword_matcher,
    task_configs,
)
from impls.base import DTYPES
from tasks import PRESETS, TASKS

DEVICES = ("cpu", "cuda")
DESCRIBE_CACHE = RUNS / ".describe-cache"  # git-ignored with raw runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_options(parser, many=True)
    arg = parser.add_argument
    arg("--backends", action="append", help=f"comma list of {', '.join(impls.BACKENDS)}")
    arg("--variants", action="append", help="comma list, e.g. eager,jit,xla")
    # list options are plural; the singular spelling is a deliberate alias
    arg("--devices", "--device", dest="devices", action="append",
        help="comma list of cpu, cuda (default: all present)")
    arg("--dtypes", "--dtype", dest="dtypes", action="append",
        help="comma list of float32, float64 (default float32)")
    arg("--phases", action="append", help=f"comma list of {', '.join(PHASES)}")
    arg("-k", dest="keyword", default=None, metavar="EXPR",
        help="pytest-style expression over cell ids, e.g. 'lstm and not compile'")
    arg("--out", default=None, help="run directory (default results/runs/<timestamp>)")
    arg("--threads", type=int, default=None, help="threads for every framework (default: all)")
    arg("--timeout", type=float, default=None, help="seconds per group before it is killed")
    arg("--seed", type=int, default=0, help="parameter initialisation seed")
    arg("--budget", type=float, default=None,
        help="timed seconds per cell (default: the preset's plan, e.g. 0.05 for quick)")
    arg("--min-rounds", type=int, default=None, help="timed rounds per cell, at least")
    arg("--no-gradcheck", action="store_true", help="skip the per-cell agreement check")


def selection_from_args(args: argparse.Namespace) -> Selection:
    preset = args.preset or "quick"
    if preset not in PRESETS:
        raise MatrixError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    overrides = knob_overrides(args)
    tasks = choice_list(args.tasks, TASKS, "task")
    known = {k for name in tasks for k in TASKS[name].knobs()}
    for key in overrides:
        if key not in known:
            raise MatrixError(f"unknown knob {key!r}; choose from {', '.join(sorted(known))}")
    default_devices = ["cpu", "cuda"] if environment.has_cuda() else ["cpu"]
    if args.threads is not None and args.threads <= 0:
        raise MatrixError(f"--threads must be a positive integer, got {args.threads}")
    if args.timeout is not None and args.timeout <= 0:
        raise MatrixError(f"--timeout must be positive, got {args.timeout}")
    variants = None
    if args.variants:
        variants = tuple(v.strip() for part in args.variants for v in part.split(",") if v.strip())
    sel = Selection(
        tasks=tuple(tasks),
        backends=tuple(choice_list(args.backends, impls.BACKENDS, "backend")),
        variants=variants,
        devices=tuple(choice_list(args.devices, DEVICES, "device", default=default_devices)),
        dtypes=tuple(choice_list(args.dtypes, DTYPES, "dtype", default=["float32"])),
        phases=tuple(choice_list(args.phases, PHASES, "phase")),
        preset=preset,
        overrides=overrides,
        keyword=args.keyword,
    )
    for task in sel.tasks:  # validates knob values now, before anything runs
        task_configs(task, preset, overrides)
    keyword_matcher(sel.keyword)
    return sel


def describe(sel: Selection, work: Path, threads: int) -> dict[str, dict[str, Any]]:
    """Each backend's variants/devices/support, asked of a worker process (frameworks
    are imported there, never here); backends are described in parallel."""
    configs = [(c.label, c.task, list(c.overrides)) for t in sel.tasks
               for c in task_configs(t, sel.preset, sel.overrides)]

    def one(name: str) -> dict[str, Any]:
        if not impls.is_installed(name):
            return {"installed": False, "error": f"backend {name!r} is not installed"}
        cache = _describe_cache(name, sel.preset, configs)
        if cache.exists():
            return json.loads(cache.read_text(encoding="utf-8"))
        spec = work / f"describe_{name}.spec"
        spec.write_text(json.dumps({"backend": name, "threads": threads, "preset": sel.preset,
                                    "configs": configs}))
        try:
            proc = subprocess.run(worker_command("describe", spec),
                                  cwd=ROOT, capture_output=True, text=True, timeout=300)
            found = json.loads(proc.stdout.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as exc:
            return {"installed": False, "error": f"describe failed: {type(exc).__name__}"}
        if found.get("installed"):
            write_text_atomic(cache, json.dumps(found))
        return found

    with ThreadPoolExecutor(max_workers=len(sel.backends)) as pool:
        return dict(zip(sel.backends, pool.map(one, sel.backends), strict=True))


def _describe_cache(backend: str, preset: str, configs: list) -> Path:
    """Where a backend's description is cached: it changes only with the backend's code,
    the framework versions, the GPU and the configs, and costs a framework import."""
    digest = hashlib.sha1()
    code = sorted((ROOT / "impls").rglob("*.py"))
    for path in code:
        digest.update(path.read_bytes())
    digest.update(json.dumps([backend, preset, configs, environment.framework_versions(),
                              environment.gpu_model()]).encode())
    return DESCRIBE_CACHE / f"{backend}-{digest.hexdigest()[:16]}.json"


class Progress:
    """Cells done / total with an ETA from the average cell time so far."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.monotonic()

    def advance(self, entry: dict[str, Any]) -> None:
        self.done += 1
        info, stats = entry.get("extra_info", {}), entry.get("stats", {})
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * max(0, self.total - self.done)
        if info.get("status") == "ok":
            median, iqr = stats.get("median"), stats.get("iqr")
            what = f"{median * 1e3:9.3f} ms  IQR {iqr / median:4.0%}" if median else ""
        else:
            what = f"ERROR {info.get('error', '')[:60]}"
        width = len(str(self.total))
        sys.stderr.write(f"[{self.done:{width}d}/{self.total}] {_clock(elapsed)} ETA "
                         f"{_clock(eta)}  {info.get('cell', '?')}  {what}\n")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-400:]


def plan_for(sel: Selection, args: argparse.Namespace) -> Plan:
    """The preset's plan with the user's --budget / --min-rounds applied."""
    plan = PLANS[sel.preset]
    if getattr(args, "budget", None) is not None:
        if args.budget <= 0:
            raise MatrixError(f"--budget must be positive, got {args.budget}")
        plan = replace(plan, budget_s=args.budget)
    if getattr(args, "min_rounds", None) is not None:
        if args.min_rounds <= 0:
            raise MatrixError(f"--min-rounds must be a positive integer, got {args.min_rounds}")
        plan = replace(plan, min_rounds=args.min_rounds,
                       max_rounds=max(plan.max_rounds, args.min_rounds))
    return plan


def run_group(group: Group, sel: Selection, out: Path, work: Path, threads: int, seed: int,
              timeout: float, progress: Progress, gradcheck: bool, plan: Plan) -> str:
    """Run one worker; returns "" or the group-level error. Always writes the group file."""
    stream, pytest_json = work / f"{group.name}.jsonl", work / f"{group.name}.pytest-out"
    spec_path, log = work / f"{group.name}.spec", work / f"{group.name}.log"
    for path in (stream, pytest_json):
        path.unlink(missing_ok=True)
    machine_info = records.default_machine_info(environment.nnparity_info(threads))
    error = group.error
    if not error:
        spec_path.write_text(json.dumps({
            "group": group_to_dict(group), "preset": sel.preset, "threads": threads,
            "seed": seed, "stream": str(stream), "pytest_json": str(pytest_json),
            "gradcheck": gradcheck, "plan": asdict(plan),
        }))
        error = _watch(spec_path, log, stream, timeout, progress)
    else:
        for _ in range(group.size):
            progress.done += 1
    records.finish_group(group, sel.preset, out / f"{group.name}.json", pytest_json, stream,
                         machine_info, error, threads)
    pytest_json.unlink(missing_ok=True)
    return error


def worker_command(action: str, spec: Path) -> list[str]:
    """The worker process's command line (`bench.timing.worker_main`)."""
    return [sys.executable, "-m", "bench.timing.worker_main", action, str(spec)]


def _watch(spec_path: Path, log: Path, stream: Path, timeout: float, progress: Progress) -> str:
    with log.open("w") as fh:
        proc = subprocess.Popen(worker_command("run", spec_path),
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    start, seen = time.monotonic(), 0
    try:
        while True:
            finished = proc.poll() is not None
            entries = records.read_stream(stream)
            for entry in entries[seen:]:
                progress.advance(entry)
            seen = len(entries)
            if finished:
                break
            if time.monotonic() - start > timeout:
                _kill(proc)
                return f"group timed out after {timeout:.0f}s (hang?)"
            time.sleep(0.2)  # polling the worker's stream, not timing anything
    except KeyboardInterrupt:
        _kill(proc)
        raise
    if proc.returncode != 0:
        return f"worker exited with code {proc.returncode}: {_tail(log)}"
    return ""


def _kill(proc: subprocess.Popen) -> None:
    """Stop the worker we started, and its children (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _interrupt_on_term(_signum: int, _frame: Any) -> None:
    """SIGTERM takes the Ctrl-C path, so the current worker (in its own session) is
    stopped too and finished records are kept."""
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_on_term)
    sel = selection_from_args(args)
    plan = plan_for(sel, args)
    threads = args.threads or os.cpu_count() or 1
    out = Path(args.out or RUNS / time.strftime("%Y%m%d-%H%M%S"))
    with tempfile.TemporaryDirectory(prefix="nnparity-describe-") as tmp:
        described = describe(sel, Path(tmp), threads)
    check_devices(sel, described)
    groups = build_groups(sel, described)
    if not groups:
        raise InputError("the selection matches no cell")
    work = out / ".work"  # worker specs, logs and streams; not *.json, so readers skip it
    work.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or PLANS[sel.preset].timeout_s
    progress = Progress(sum(g.size for g in groups))
    sys.stderr.write(f"nnparity run: {progress.total} cells in {len(groups)} groups, "
                     f"preset {sel.preset}, {threads} threads -> {out}\n")
    failed = []
    for i, group in enumerate(groups):
        try:
            error = run_group(group, sel, out, work, threads, args.seed, timeout, progress,
                              not args.no_gradcheck, plan)
        except KeyboardInterrupt:
            records.finish_group(group, sel.preset, out / f"{group.name}.json",
                                 work / f"{group.name}.pytest-out", work / f"{group.name}.jsonl",
                                 records.default_machine_info(environment.nnparity_info(threads)),
                                 "interrupted", threads)
            sys.stderr.write(f"interrupted: {i} of {len(groups)} groups finished; "
                             f"records kept in {out}\n")
            return 130
        if error:
            failed.append(f"{group.name}: {error}")
    for line in failed:
        sys.stderr.write(f"group error: {line}\n")
    disagree, errors = count_failures(out)
    verdict = (f"{disagree} cell(s) failed gradient agreement, {errors} cell(s) errored"
               if disagree or errors else "every cell ran and agreed")
    sys.stderr.write(f"nnparity run: done in {_clock(time.monotonic() - progress.start)}; "
                     f"results in {out}; {verdict}\n")
    return 1 if disagree or errors else 0


def count_failures(out: Path) -> tuple[int, int]:
    """(cells whose gradient check failed, cells that errored) in a run directory's
    group files: what makes `run` exit 1 (README: exit 1 means a check failed)."""
    disagree = errors = 0
    for path in sorted(out.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            errors += 1  # a group file we cannot read is a failure, never a pass
            continue
        for bench in doc.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            if info.get("status", "ok") != "ok":
                errors += 1
            elif (info.get("gradcheck") or {}).get("passed") is False:
                disagree += 1
    return disagree, errors


def check_devices(sel: Selection, described: dict[str, dict[str, Any]]) -> None:
    """A device that no selected (installed) backend has is bad input, not 100 error cells."""
    installed = [d for d in described.values() if d.get("installed")]
    if not installed:
        return  # every group is recorded as "not installed"; the run exits 1
    for device in sel.devices:
        if not any(device in d.get("devices", ("cpu",)) for d in installed):
            have = sorted({x for d in installed for x in d.get("devices", ("cpu",))})
            raise InputError(f"device {device!r} is not available to any selected backend "
                             f"here (available: {', '.join(have)})")
