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
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
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
from bench.options import (
    InputError,
    OutputError,
    add_task_options,
    choice_list,
    int_range,
    knob_overrides,
    positive_float,
    positive_int,
    seed_int,
)
from bench.results import write as records
from bench.results.paths import ROOT, RUNS
from bench.results.write import write_text_atomic
from bench.timing import environment
from bench.timing import executor as executors
from bench.timing.executor import Outcome, RunContext
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
    not_applicable,
    task_configs,
)
from bench.timing.shard import parse_shard, shard_groups
from bench.timing.watch import follow, worker_command
from impls.base import DTYPES, PRECISIONS, STRICT, BackendError
from tasks import PRESETS, TASKS
from tasks.spec import SpecError

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
    arg("--precisions", "--precision", dest="precisions", action="append",
        help=f"comma list of {', '.join(PRECISIONS)} (default fp32: strict float32, TF32 "
             "off); reduced modes are timed beside their error against float64, and "
             "combinations a backend does not offer are n/a")
    arg("--phases", action="append", help=f"comma list of {', '.join(PHASES)}")
    arg("-k", dest="keyword", default=None, metavar="EXPR",
        help="pytest-style expression over cell ids, e.g. 'lstm and not compile'")
    arg("--out", default=None, help="run directory (default results/runs/<timestamp>)")
    arg("--threads", type=int_range(1, MAX_THREADS), default=None,
        help="threads for every framework (default: all)")
    arg("--timeout", type=positive_float, default=None,
        help="seconds per group (and per backend description) before it is killed")
    arg("--seed", type=seed_int, default=0, help="parameter initialisation seed")
    arg("--budget", type=positive_float, default=None,
        help="timed seconds per cell (default: the preset's plan, e.g. 0.05 for quick)")
    arg("--min-rounds", type=positive_int, default=None, help="timed rounds per cell, at least")
    arg("--no-gradcheck", action="store_true", help="skip the per-cell agreement check")
    arg("--shard", default=None, metavar="K/N",
        help="run only shard K of N (a deterministic share of the groups, e.g. 2/4)")
    executors.add_arguments(parser)


#: more threads than any machine has cores is a typo, not a setting
MAX_THREADS = 4096


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
        precisions=tuple(choice_list(getattr(args, "precisions", None), PRECISIONS, "precision",
                                     default=[STRICT])),
    )
    for task in sel.tasks:  # validates knob values now, before anything runs
        task_configs(task, preset, overrides)
    keyword_matcher(sel.keyword)
    return sel


DESCRIBE_TIMEOUT_S = 300.0  # without --timeout: a framework import can take a minute cold


def describe(sel: Selection, work: Path, threads: int,
             timeout: float = DESCRIBE_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """Each backend's variants/devices/support, asked of a worker process (frameworks
    are imported there, never here); backends are described in parallel, each within
    `timeout` seconds (a backend that hangs at import is recorded as an error)."""
    configs = [(c.label, c.task, list(c.overrides)) for t in sel.tasks
               for c in task_configs(t, sel.preset, sel.overrides)]

    def one(name: str) -> dict[str, Any]:
        if not impls.is_installed(name):
            return {"installed": False, "error": f"backend {name!r} is not installed"}
        cache = _describe_cache(name, sel.preset, configs)
        cached = _read_cache(cache)
        if cached is not None:
            return cached
        start = time.monotonic()
        spec = work / f"describe_{name}.spec"
        spec.write_text(json.dumps({"backend": name, "threads": threads, "preset": sel.preset,
                                    "configs": configs}))
        try:
            proc = subprocess.run(worker_command("describe", spec), cwd=ROOT,
                                  capture_output=True, text=True, timeout=timeout,
                                  env=_worker_env())
        except subprocess.TimeoutExpired:
            error = f"describe timed out after {timeout:g}s (hangs at import?)"
            sys.stderr.write(f"nnparity run: {name}: {error}\n")
            return {"installed": False, "error": error}
        try:
            found = json.loads(proc.stdout.strip().splitlines()[-1])
            if not isinstance(found, dict):
                raise ValueError(found)
        except (json.JSONDecodeError, IndexError, ValueError):
            tail = " | ".join(proc.stderr.strip().splitlines()[-2:])[-300:]
            error = f"describe failed (exit {proc.returncode}): {tail or 'no output'}"
            sys.stderr.write(f"nnparity run: {name}: {error}\n")
            return {"installed": False, "error": error}
        what = "ok" if found.get("installed") else f"unusable: {found.get('error', '')}"
        sys.stderr.write(f"nnparity run: described {name} in "
                         f"{time.monotonic() - start:.1f}s: {what}\n")
        if found.get("installed"):
            try:
                write_text_atomic(cache, json.dumps(found))
            except OutputError:
                pass  # the cache only saves time; an unwritable one costs a describe next run
        return found

    sys.stderr.write(f"nnparity run: describing {', '.join(sel.backends)} "
                     f"(timeout {timeout:g}s each)\n")
    with ThreadPoolExecutor(max_workers=len(sel.backends)) as pool:
        return dict(zip(sel.backends, pool.map(one, sel.backends), strict=True))


def _read_cache(cache: Path) -> dict[str, Any] | None:
    """A cached description, or None when there is none or it is unreadable or not one
    (it is then deleted and rebuilt, never trusted)."""
    if not cache.exists():
        return None
    try:
        found = json.loads(cache.read_text(encoding="utf-8"))
        if isinstance(found, dict) and found.get("installed") is True and \
                isinstance(found.get("variants"), list) and isinstance(found.get("supports"),
                                                                       dict):
            return found
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        pass
    try:
        cache.unlink()
    except OSError:
        pass
    return None


def _describe_cache(backend: str, preset: str, configs: list) -> Path:
    """Where a backend's description is cached: it changes only with the backend's code,
    the framework versions, the GPU and the configs, and costs a framework import."""
    digest = hashlib.sha1()
    code = sorted((ROOT / "impls").rglob("*.py"))
    for path in code:
        digest.update(path.read_bytes())
    # where the framework is found: another install (or a planted module) is another backend
    spec = importlib.util.find_spec(impls.BACKENDS[backend])
    digest.update(json.dumps([backend, preset, configs, environment.framework_versions(),
                              environment.gpu_model(), spec and spec.origin]).encode())
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


def work_files(work: Path, group: Group) -> tuple[Path, Path, Path, Path]:
    """A group's stream, pytest-benchmark output, spec and log in the run's `.work`."""
    return (work / f"{group.name}.jsonl", work / f"{group.name}.pytest-out",
            work / f"{group.name}.spec", work / f"{group.name}.log")


def drop_work_files(work: Path, group: Group, keep_log: bool = False) -> None:
    """Remove a group's scratch files once its results file is written (or could not
    be): a full disk must not leave a torn stream or an empty file behind."""
    stream, pytest_json, spec, log = work_files(work, group)
    for path in (stream, pytest_json, spec):
        path.unlink(missing_ok=True)
    try:
        if not keep_log or log.stat().st_size == 0:
            log.unlink()
    except OSError:
        pass


def run_group(group: Group, sel: Selection, out: Path, work: Path, threads: int, seed: int,
              timeout: float, progress: Progress, gradcheck: bool, plan: Plan) -> str:
    """Run one worker; returns "" or the group-level error. Always writes the group file
    (or raises `OutputError` when it cannot)."""
    stream, pytest_json, spec_path, log = work_files(work, group)
    for path in (stream, pytest_json):
        path.unlink(missing_ok=True)
    machine_info = records.default_machine_info(
        environment.nnparity_info(threads, _recorded_precisions(sel)))
    result = out / f"{group.name}.json"
    error = group.error
    if not error:
        write_text_atomic(spec_path, json.dumps({
            "group": group_to_dict(group), "preset": sel.preset, "threads": threads,
            "seed": seed, "stream": str(stream), "pytest_json": str(pytest_json),
            "gradcheck": gradcheck, "plan": asdict(plan), "result": str(result),
            "precisions": _recorded_precisions(sel),
            # float32 cells measure their error against float64 when reduced modes run,
            # so the strict cell's error stands beside theirs in the report
            "precision_errors": any(p != STRICT for p in sel.precisions),
        }))
        error = _watch(spec_path, log, stream, timeout, progress)
    else:
        for _ in range(group.size):
            progress.done += 1
    records.finish_group(group, sel.preset, result, pytest_json, stream, machine_info, error,
                         threads)
    drop_work_files(work, group, keep_log=True)
    return error


def _recorded_precisions(sel: Selection) -> list[str] | None:
    """The precision modes the run description records (None: strict only, as before)."""
    return list(sel.precisions) if sel.precisions != (STRICT,) else None


def _worker_env() -> dict[str, str]:
    """The worker's environment: ours, plus our pid, so a worker whose runner dies
    notices (`bench.timing.worker_main` watches it) and exits instead of running on."""
    from bench.timing.worker_main import PARENT_ENV

    return {**os.environ, PARENT_ENV: str(os.getpid())}


def _watch(spec_path: Path, log: Path, stream: Path, timeout: float, progress: Progress) -> str:
    """Run one group's worker, advancing the progress line per streamed cell."""
    cells = follow(spec_path, log, stream, timeout, env=_worker_env())
    try:
        while True:
            try:
                entry = next(cells)
            except StopIteration as done:
                return done.value
            progress.advance(entry)
    finally:
        cells.close()  # an exception out here still kills the worker (follow's cleanup)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(_signum: int, _frame: Any) -> None:
    """SIGINT, SIGTERM and SIGHUP take the Ctrl-C path, so the current worker (in its
    own session) is stopped too and finished records are kept. The first one turns
    the others off: a second Ctrl-C must not interrupt the writing of what the first
    one saved."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


class LocalExecutor:
    """The default executor: the groups one after another on this machine, so no two
    ever share the cores; Ctrl-C stops the current worker and keeps finished records;
    a full or failing disk stops the run and keeps every group already written."""

    def prepare(self, groups: list[Group]) -> list[Group]:
        return groups

    def run(self, groups: list[Group], ctx: RunContext, progress: Progress) -> Outcome:
        sel, out, work, threads = ctx.sel, ctx.out, ctx.work, ctx.threads
        failed = []
        for i, group in enumerate(groups):
            try:
                error = run_group(group, sel, out, work, threads, ctx.seed, ctx.timeout,
                                  progress, ctx.gradcheck, ctx.plan)
            except KeyboardInterrupt:
                stream, pytest_json, _, _ = work_files(work, group)
                try:
                    records.finish_group(
                        group, sel.preset, out / f"{group.name}.json", pytest_json, stream,
                        records.default_machine_info(environment.nnparity_info(
                            threads, _recorded_precisions(sel))),
                        "interrupted", threads)
                    drop_work_files(work, group, keep_log=True)
                    kept = i + 1
                except OutputError as exc:
                    drop_work_files(work, group)
                    sys.stderr.write(f"nnparity run: error: {exc}\n")
                    kept = i
                sys.stderr.write(f"interrupted: {i} of {len(groups)} groups finished; "
                                 f"records of {kept} groups kept in {out}\n")
                return Outcome(tuple(failed), interrupted=True)
            except OutputError as exc:  # a full or failing disk: keep what is written, stop
                drop_work_files(work, group)
                _remove_if_empty(work)
                sys.stderr.write(f"nnparity run: error: {exc}; stopped, {i} of {len(groups)} "
                                 f"groups kept in {out}\n")
                return Outcome(tuple(failed), output_error=True)
            if error:
                failed.append(f"{group.name}: {error}")
        _remove_if_empty(work)
        return Outcome(tuple(failed))


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _STOP_SIGNALS:
        # a signal ignored by whoever started us (nohup, a background job) stays ignored
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)


class RunDirectory:
    """A run directory this process owns: created if needed, locked for the run's
    lifetime (`flock`, released by the kernel however the process ends), and refused
    when it holds an earlier run's results, so two runs never mix their files."""

    LOCK = ".nnparity.lock"

    def __init__(self, requested: str | None) -> None:
        existed = bool(requested) and Path(requested).is_dir()
        self.path = self._create(requested)
        self.created = not existed  # removed again if the selection turns out to be bad
        lock = self.path / self.LOCK
        try:
            self._fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {lock}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self._fd, 200).decode("utf-8", "replace").strip() or "another run"
            os.close(self._fd)
            raise InputError(f"--out {self.path} is in use by {holder}; "
                             "choose another --out or wait for it to finish") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"nnparity run pid {os.getpid()} on {socket.gethostname()} "
                           f"since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        stale = self.stale()
        if stale:
            os.close(self._fd)
            raise InputError(f"--out {self.path} already holds an earlier run's files "
                             f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); "
                             "choose a new --out or remove them")

    @staticmethod
    def _create(requested: str | None) -> Path:
        if requested:
            path = Path(requested)
            if path.exists() and not path.is_dir():
                raise OutputError(f"--out {path}: exists and is not a directory")
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"--out {path}: cannot create ({exc.strerror or exc})") from None
            return path
        # the default is unique even for runs started in the same second: mkdir is atomic
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            RUNS.mkdir(parents=True, exist_ok=True)
            for n in range(1, 1000):
                path = RUNS / (stamp if n == 1 else f"{stamp}-{n}")
                try:
                    path.mkdir()
                    return path
                except FileExistsError:
                    continue
        except OSError as exc:
            raise OutputError(f"cannot create a run directory in {RUNS}: "
                              f"{exc.strerror or exc}") from None
        raise OutputError(f"cannot create a run directory in {RUNS}: 999 runs this second")

    def discard(self) -> None:
        """Undo a run that wrote nothing (bad input found after the lock was taken):
        the lock file goes, and the directory too when this run created it."""
        (self.path / self.LOCK).unlink(missing_ok=True)
        if self.created:
            try:
                self.path.rmdir()
            except OSError:
                pass

    def stale(self) -> list[str]:
        """Results files and scratch files an earlier run left here."""
        found = sorted(p.name for p in self.path.glob("*.json"))
        work = self.path / ".work"
        if work.is_dir() and any(work.iterdir()):
            found.append(".work/")
        return found


def check_environment() -> None:
    """Environment variables the workers read, checked before any worker starts: a bad
    one is bad input (exit 2, one line), not an error in every cell."""
    from impls.threads import interop_threads

    interop_threads()  # NNPARITY_INTEROP_THREADS: a positive integer or unset


def main(args: argparse.Namespace) -> int:
    _install_signal_handlers()
    check_environment()
    if getattr(args, "out", None) is not None and not args.out.strip():
        raise InputError("--out '': an empty path (leave --out out for the default)")
    sel = selection_from_args(args)
    plan = plan_for(sel, args)
    shard = parse_shard(getattr(args, "shard", None))
    executor = executors.executor_for(args)
    threads = args.threads or os.cpu_count() or 1
    # own the run directory first, so a busy --out fails before anything slow runs;
    # bad input found below removes it again (it has written nothing)
    run_dir = RunDirectory(args.out)  # held until this process exits
    try:
        groups, sel_timeout = _select_groups(sel, args, shard, threads)
    except EmptyShard as note:  # not an error: a CI matrix may have more shards than groups
        run_dir.discard()
        sys.stderr.write(f"{note}\n")
        return 0
    except (InputError, SpecError, BackendError):
        run_dir.discard()
        raise
    return _execute(run_dir, groups, sel, plan, args, executor, threads, sel_timeout)


class EmptyShard(Exception):
    """This shard of a valid selection holds no group."""


def _select_groups(sel: Selection, args: argparse.Namespace, shard, threads: int):
    """The groups to run (validated, sharded), and the group timeout."""
    # each precision mode is another program per cell, plus its error measurement
    timeout = args.timeout or PLANS[sel.preset].timeout_s * len(sel.precisions)
    with tempfile.TemporaryDirectory(prefix="nnparity-describe-") as tmp:
        described = describe(sel, Path(tmp), threads,
                             args.timeout if args.timeout else DESCRIBE_TIMEOUT_S)
    check_devices(sel, described)
    groups = build_groups(sel, described)
    if shard is not None:
        everything = len(groups)
        groups = shard_groups(groups, sel, *shard)
        if everything and not groups:  # more CI shards than groups: this one has none
            raise EmptyShard(f"nnparity run: shard {shard[0]}/{shard[1]} has no group (the "
                             f"selection has {everything}); nothing to run")
    unoffered = not_applicable(sel, described)
    if not groups:
        extra = (f" ({len(unoffered)} combinations are n/a: no backend offers that precision "
                 "there)") if unoffered else ""
        raise InputError("the selection matches no cell"
                         + (f" in shard {shard[0]}/{shard[1]}" if shard else "") + extra)
    for backend, device, dtype, precision in sorted({(b, d, t, p) for _, b, _, d, t, p
                                                     in unoffered}):
        sys.stderr.write(f"n/a: {backend} {dtype} {precision} on {device} (not offered)\n")
    return groups, timeout


def _execute(run_dir: RunDirectory, groups: list[Group], sel: Selection, plan,
             args: argparse.Namespace, executor, threads: int, timeout: float) -> int:
    out = run_dir.path
    groups = executor.prepare(groups)
    work = out / ".work"  # worker specs, logs and streams; hidden, so readers skip it
    try:
        work.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {work}: {exc.strerror or exc}") from None
    progress = Progress(sum(g.size for g in groups))
    sys.stderr.write(f"nnparity run: {progress.total} cells in {len(groups)} groups, "
                     f"preset {sel.preset}, {threads} threads -> {out}\n")
    ctx = RunContext(sel, plan, out, work, threads, args.threads is not None, args.seed,
                     timeout, not args.no_gradcheck)
    if hasattr(executor, "abandon"):  # a connection that never answers ends the process
        executor.abandon = lambda: (shutil.rmtree(work, ignore_errors=True),
                                    run_dir.discard())
    try:
        outcome = executor.run(groups, ctx, progress)
    except InputError:  # e.g. a Ray cluster that cannot be reached: nothing ran
        if not any(out.glob("*.json")):
            shutil.rmtree(work, ignore_errors=True)
            run_dir.discard()
        raise
    if outcome.interrupted:
        return 130
    if outcome.output_error:
        return 2
    for line in outcome.failed:
        sys.stderr.write(f"group error: {line}\n")
    disagree, errors = count_failures(out)
    verdict = (f"{disagree} cell(s) failed gradient agreement, {errors} cell(s) errored"
               if disagree or errors else "every cell ran and agreed" if not args.no_gradcheck
               else "every cell ran (agreement not checked: --no-gradcheck)")
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


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass
