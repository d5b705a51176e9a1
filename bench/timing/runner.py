"""`nnparity run`: time the benchmark matrix, one worker process per (backend, task) group.

The runner validates the selection (exit 2 with one line on a bad value),
asks each backend's worker to describe itself (variants, devices, which
variants fit which model), builds the matrix, then runs the groups one after
another so no two ever share the cores: each group in `--rounds` worker
processes with its cells in a seeded random order per round, the rounds
interleaved across groups (round 1 of every group, then round 2, ...), then
extra rounds for the cells whose interval is still too wide. It watches each worker's stream of
finished cells to print progress (cells done / total, ETA), kills a worker
that exceeds the group timeout, and always writes the group's pytest-benchmark
JSON, with error entries for what failed, hung or could not run. Ctrl-C stops
the current worker and keeps every finished record. This process never imports
a framework and never times anything itself.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import impls
from bench.options import (
    InputError,
    OutputError,
    add_list_option,
    add_task_options,
    check_overrides_known,
    choice_list,
    int_range,
    knob_overrides,
    positive_float,
    positive_int,
    seed_int,
)
from bench.progress import clock
from bench.results import write as records
from bench.results.paths import ROOT, RUNS
from bench.results.schema import STEADY_PHASES
from bench.results.write import write_text_atomic
from bench.timing import environment
from bench.timing import executor as executors
from bench.timing.executor import EXECUTORS, Executor, Outcome, Progress, RunContext
from bench.timing.matrix import (
    PHASES,
    PLANS,
    Group,
    MatrixError,
    Plan,
    Selection,
    build_groups,
    keyword_matcher,
    not_applicable,
    round_order,
    round_plan,
    task_configs,
)
from bench.timing.shard import parse_shard, shard_groups
from bench.timing.watch import (
    WorkerSpec,
    WorkFiles,
    follow,
    group_file,
    recorded_precisions,
    relay,
    run_through,
    work_files,
    worker_command,
)
from impls.base import DEVICES, DTYPES, PRECISIONS, STRICT, BackendError
from tasks import PRESETS, TASKS
from tasks.spec import SpecError

DESCRIBE_CACHE = RUNS / ".describe-cache"  # git-ignored with raw runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_options(parser, many=True)
    arg = parser.add_argument
    # list options are plural; the singular spelling is an alias (add_list_option)
    add_list_option(parser, "backends", f"comma list of {', '.join(impls.BACKENDS)}")
    add_list_option(parser, "variants", "comma list, e.g. eager,jit,xla")
    add_list_option(parser, "devices", "comma list of cpu, cuda (default: all present)")
    add_list_option(parser, "dtypes", "comma list of float32, float64 (default float32)")
    add_list_option(parser, "precisions",
                    f"comma list of {', '.join(PRECISIONS)} (default fp32: strict float32, "
                    "TF32 off); reduced modes are timed beside their error against float64, "
                    "and combinations a backend does not offer are n/a")
    add_list_option(parser, "phases", f"comma list of {', '.join(PHASES)}")
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
    arg("--min-rounds", type=positive_int, default=None,
        help="timed samples per cell, at least (pytest-benchmark's rounds)")
    arg("--rounds", type=positive_int, default=None,
        help="independent worker processes per group, each timing every cell in its own "
             "seeded random order with its share of the budget (default: the preset's, "
             "2 for quick, 3 for standard); a cell's confidence interval then includes "
             "how much it moves from one process to the next")
    arg("--extra-rounds", type=int, default=None, metavar="N",
        help="after the rounds, up to N more rounds of only the cells whose 95%% interval "
             "is wider than --target-ci (default: the preset's, 1)")
    arg("--target-ci", type=positive_float, default=None, metavar="F",
        help="the interval half-width, relative to the median, that a cell needs no extra "
             "round for (default 0.03: +-3%%)")
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
    check_overrides_known(tasks, overrides)
    default_devices = ["cpu", "cuda"] if environment.has_cuda() else ["cpu"]
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


def plan_for(sel: Selection, args: argparse.Namespace) -> Plan:
    """The preset's plan with the user's --budget / --min-rounds applied."""
    plan = PLANS[sel.preset]
    # --budget and --min-rounds are positive by their argparse types
    if getattr(args, "budget", None) is not None:
        plan = replace(plan, budget_s=args.budget)
    if getattr(args, "min_rounds", None) is not None:
        plan = replace(plan, min_rounds=args.min_rounds,
                       max_rounds=max(plan.max_rounds, args.min_rounds))
    if getattr(args, "rounds", None) is not None:
        if args.rounds <= 0:
            raise MatrixError(f"--rounds must be a positive integer, got {args.rounds}")
        plan = replace(plan, rounds=args.rounds)
    if getattr(args, "extra_rounds", None) is not None:
        if args.extra_rounds < 0:
            raise MatrixError(f"--extra-rounds must be 0 or more, got {args.extra_rounds}")
        plan = replace(plan, extra_rounds=args.extra_rounds)
    if getattr(args, "target_ci", None) is not None:
        if not 0 < args.target_ci < 1:
            raise MatrixError(f"--target-ci must be between 0 and 1, got {args.target_ci:g}")
        plan = replace(plan, target_ci=args.target_ci)
    return plan


def round_files(work: Path, group: Group, round_index: int = 0) -> WorkFiles:
    """A group's scratch files for one round (`bench.timing.watch.work_files`, one set
    per round; round 0 keeps the names a single-process run always had)."""
    return work_files(work, group.name + (f".r{round_index + 1}" if round_index else ""))


def drop_work_files(work: Path, group: Group, keep_log: bool = False,
                    rounds: int = 1) -> None:
    """Remove a group's scratch files once its results file is written (or could not
    be): a full disk must not leave a torn stream or an empty file behind."""
    for r in range(max(1, rounds)):
        stream, pytest_json, spec, log = round_files(work, group, r)
        for path in (stream, pytest_json, spec):
            path.unlink(missing_ok=True)
        try:
            if not keep_log or log.stat().st_size == 0:
                log.unlink()
        except OSError:
            pass


#: the 1-, 5- and 15-minute load averages when this run started (before describing)
RUN_START_LOAD: list[tuple[float, float, float]] = []


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


class LoadMonitor:
    """The machine's state while one group's rounds ran: load averages before its first
    and after its last round, and the share of the machine's CPU time that other
    processes used during its rounds (all busy CPU time in /proc/stat minus this
    runner's and its reaped workers' own), summed over its rounds."""

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[float] = []
        self.others_s = self.wall_s = 0.0
        self.known = True

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        import resource

        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = [int(v) for v in fh.readline().split()[1:]]
            tick = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
        # user nice system idle iowait irq softirq steal (guest is counted in user)
        busy = (sum(fields[:3]) + sum(fields[5:8])) / tick
        own = sum(getattr(resource.getrusage(who), f) for who in
                  (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        return busy, own, time.monotonic()

    @contextlib.contextmanager
    def measuring(self) -> Any:
        if not self.before:
            self.before = _loadavg()
        start = self._snapshot()
        try:
            yield
        finally:
            end = self._snapshot()
            self.after = _loadavg()
            if start and end and end[2] > start[2]:
                self.others_s += max(0.0, (end[0] - start[0]) - (end[1] - start[1]))
                self.wall_s += end[2] - start[2]
            else:
                self.known = False

    def block(self) -> dict[str, Any]:
        cores = os.cpu_count() or 1
        share = (round(self.others_s / (self.wall_s * cores), 4)
                 if self.known and self.wall_s > 0 else None)
        return {"loadavg_run_start": list(RUN_START_LOAD[0]) if RUN_START_LOAD else [],
                "loadavg_before": self.before, "loadavg_after": self.after,
                "others_cpu_share": share, "cores": cores}


def round_cells(group: Group, rounds: int) -> int:
    """Cells a group's rounds time: every cell each round, calibration in the first."""
    return len(group.cells) * max(1, rounds) + len(group.calibrate_devices)


class GroupRun:
    """One group's rounds as the run goes: the parts (cells in order) each round timed,
    the group-level error that stopped it, and the machine's load while it ran."""

    def __init__(self, group: Group, plan: Plan) -> None:
        self.group, self.plan = group, plan
        self.parts: list[Group] = []
        self.error = group.error
        self.load = LoadMonitor()
        self.settled = False  # no cell needs an extra round any more
        self.written = False  # its results file exists
        self.final = False  # ... in its final form (intervals added, scratch files gone)
        self.interrupted = False  # Ctrl-C (or a stop signal) cut one of its rounds short

    def next_part(self, seed: int) -> Group | None:
        """The next round's cells in their order; None when the group is done."""
        group, planned, r = self.group, max(1, self.plan.rounds), len(self.parts)
        if self.error or self.settled:
            return None
        if r >= planned:
            return None  # extra rounds are chosen by `extra_part`
        cells = round_order(group.cells, seed, group.name, r) if planned > 1 \
            else list(group.cells)
        # calibration and the agreement check are per program, not per process: round 1
        return replace(group, cells=tuple(cells),
                       calibrate_devices=group.calibrate_devices if r == 0 else ())

    def extra_part(self, doc: dict[str, Any], seed: int) -> Group | None:
        """An extra round of the steady cells whose interval is still too wide."""
        wide = wide_cells(doc, self.plan.target_ci)
        if not wide:
            self.settled = True
            return None
        cells = round_order([c for c in self.group.cells if c.id in wide], seed,
                            self.group.name, len(self.parts))
        return replace(self.group, cells=tuple(cells), calibrate_devices=())


def run_rounds(runs: list[GroupRun], sel: Selection, out: Path, work: Path, threads: int,
               seed: int, timeout: float, progress: Progress, gradcheck: bool,
               plan: Plan) -> None:
    """Every group's rounds, interleaved the way asv interleaves them: round 1 of every
    group, then round 2 of every group, ... so a disturbance that lasts a minute or
    two lands in one round of many groups rather than in every round of one; then up
    to `plan.extra_rounds` more passes over the groups, each timing only the steady
    cells whose interval is still wider than +-`plan.target_ci` (adaptive sampling).
    A group's file is (re)written after each of its rounds, so an interruption keeps
    every finished round; the last write adds each cell's interval."""
    planned = max(1, plan.rounds)
    for run in runs:
        if run.group.error:
            progress.skip(round_cells(run.group, planned))
            _write_rounds(run, sel, out, work, threads, run.error, seed)
    for r in range(planned):
        for run in runs:
            part = run.next_part(seed)
            if part is not None:
                _one_round(run, part, sel, out, work, threads, seed, timeout, progress,
                           gradcheck and r == 0, plan, final=planned == 1)
    for _ in range(plan.extra_rounds if planned > 1 else 0):
        for run in runs:
            if run.error or run.settled:
                continue
            part = run.extra_part(_merged(run, sel, work, threads, "", seed), seed)
            if part is None:
                continue
            progress.total += len(part.cells)
            _one_round(run, part, sel, out, work, threads, seed, timeout, progress, False,
                       plan, final=False)
    for run in runs:
        if run.parts and not run.final:
            _write_rounds(run, sel, out, work, threads, "", seed, final=True)


def _one_round(run: GroupRun, part: Group, sel: Selection, out: Path, work: Path,
               threads: int, seed: int, timeout: float, progress: Progress, gradcheck: bool,
               plan: Plan, final: bool) -> None:
    """Time one round of one group, then write the group's file from its rounds so far
    (with "interrupted" for the cells this round had not reached on Ctrl-C)."""
    planned = max(1, plan.rounds)
    run.parts.append(part)
    r = len(run.parts) - 1
    try:
        with run.load.measuring():
            error = _run_round(run.parts, sel, out, work, threads, seed, timeout, progress,
                               gradcheck, round_plan(plan))
    except KeyboardInterrupt:
        run.interrupted = True
        try:
            _write_rounds(run, sel, out, work, threads, "interrupted", seed, final=True)
        except OutputError as exc:  # say why this group's records are lost, stay interrupted
            drop_work_files(work, run.group, rounds=len(run.parts))
            sys.stderr.write(f"nnparity run: error: {exc}\n")
        raise
    if error:
        if planned == 1:
            run.error = error
        elif r < planned:
            run.error = f"round {r + 1} of {planned}: {error}"
            # a hang or crash would repeat: no further rounds
            progress.skip(len(run.group.cells) * (planned - r - 1))
        else:
            # an extra round only narrows intervals: a worker that dies or hangs in one
            # drops that round (the planned rounds' samples stand, the cells stay ok)
            # and the group gets no more extra rounds; its log stays in .work
            files = round_files(work, run.group, r)
            for path in (files.stream, files.pytest_json, files.spec):
                path.unlink(missing_ok=True)
            sys.stderr.write(f"nnparity run: {run.group.name}: extra round {r + 1} dropped "
                             f"({error}); log: {files.log}\n")
            run.parts.pop()
            run.settled = True
            error = ""
    _write_rounds(run, sel, out, work, threads, error, seed, final=final or bool(error))


def wide_cells(doc: dict[str, Any], target: float) -> set[str]:
    """Steady-state cells of a merged group document whose recorded 95% interval is
    wider than +-`target` of their median."""
    out = set()
    for bench in doc.get("benchmarks", []):
        info, stats = bench.get("extra_info") or {}, bench.get("stats") or {}
        ci, median = info.get("median_ci") or [], stats.get("median")
        if info.get("status") != "ok" or info.get("phase") not in STEADY_PHASES or len(ci) != 2:
            continue
        if median and (ci[1] - ci[0]) / 2.0 / median > target:
            out.add(info["cell"])
    return out


def _run_round(parts: list[Group], sel: Selection, out: Path, work: Path, threads: int,
               seed: int, timeout: float, progress: Progress, gradcheck: bool,
               plan: Plan) -> str:
    """Run the last of `parts` (round len(parts) - 1) in a fresh worker process."""
    r, part = len(parts) - 1, parts[-1]
    files = round_files(work, part, r)
    for path in (files.stream, files.pytest_json):
        path.unlink(missing_ok=True)
    spec = WorkerSpec(part, sel.preset, plan, threads, seed, gradcheck, tuple(sel.precisions))
    write_text_atomic(files.spec, json.dumps({
        **spec.to_json(files, threads, group_file(out, part.name)),
        # a worker whose runner dies writes the group file from every round so far
        "round": r, "orders": [[c.id for c in p.cells] for p in parts],
        "previous_rounds": [[str(p) for p in round_files(work, part, k)[:2]] for k in range(r)],
    }))
    cells = follow(files.spec, files.log, files.stream, timeout, env=_worker_env())
    return run_through(relay(cells, progress.advance))


def _merged(run: GroupRun, sel: Selection, work: Path, threads: int, error: str, seed: int,
            intervals: bool = True) -> dict[str, Any]:
    """The group's document from the rounds that ran (their streams and pytest-benchmark
    files), with error entries for what the last round never reached (`error`)."""
    group, parts, plan = run.group, run.parts, run.plan
    machine_info = records.default_machine_info(
        environment.nnparity_info(threads, recorded_precisions(sel.precisions)))
    docs = []
    for r, part in enumerate(parts or [group]):
        stream, pytest_json, _, _ = round_files(work, group, r)
        last = r == len(parts) - 1 or not parts
        docs.append(records.group_document(part, sel.preset, pytest_json, stream, machine_info,
                                           (error if last else "") or "", threads))
    if error and len(docs) > 1:
        _unreached_keep_earlier(docs, parts[-1], error)
    planned = max(1, plan.rounds)
    run_block = {"rounds": planned, "rounds_run": len(parts), "order_seed": seed,
                 "extra_rounds": [len(p.cells) for p in parts[planned:]],
                 "target_ci": plan.target_ci, "machine_load": run.load.block()}
    return records.merge_rounds(docs, [[c.id for c in p.cells] for p in parts or [group]],
                                run_block, intervals=intervals)


def _unreached_keep_earlier(docs: list[dict[str, Any]], last: Group, error: str) -> None:
    """A round cut short (a hang, a crash, Ctrl-C) leaves error entries for the cells it
    never reached; a cell that an earlier round timed keeps those samples instead (it
    did not fail: it did not run again). The cell that was running when a hang or crash
    ended the round (the first one not reached) stays an error; after Ctrl-C none is."""
    entries = docs[-1]["benchmarks"]
    unreached = {(b.get("extra_info") or {}).get("cell") for b in entries
                 if (b.get("extra_info") or {}).get("status") != "ok"
                 and (b.get("extra_info") or {}).get("error") == error}
    culprit = next((c.id for c in last.cells if c.id in unreached), None)
    if error == "interrupted":
        culprit = None
    earlier = {(b.get("extra_info") or {}).get("cell") for d in docs[:-1]
               for b in d["benchmarks"] if (b.get("extra_info") or {}).get("status") == "ok"}
    drop = (unreached & earlier) - {culprit}
    docs[-1]["benchmarks"] = [b for b in entries
                              if (b.get("extra_info") or {}).get("cell") not in drop]


def _write_rounds(run: GroupRun, sel: Selection, out: Path, work: Path, threads: int,
                  error: str, seed: int, final: bool = True) -> None:
    """Write the group's results file from its rounds so far (`_merged`); the final
    write adds each cell's interval and removes the group's scratch files."""
    doc = _merged(run, sel, work, threads, error, seed, intervals=final)
    records.write_group_file(group_file(out, run.group.name), doc)
    run.written = True
    if final:
        run.final = True
        drop_work_files(work, run.group, keep_log=True, rounds=max(1, len(run.parts)))


def _worker_env() -> dict[str, str]:
    """The worker's environment: ours, plus our pid, so a worker whose runner dies
    notices (`bench.timing.worker_main` watches it) and exits instead of running on."""
    from bench.timing.worker_main import PARENT_ENV

    return {**os.environ, PARENT_ENV: str(os.getpid())}


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
        runs = [GroupRun(g, ctx.plan) for g in groups]
        try:
            run_rounds(runs, sel, out, work, threads, ctx.seed, ctx.timeout, progress,
                       ctx.gradcheck, ctx.plan)
        except KeyboardInterrupt:
            kept = sum(r.written for r in runs)
            # finished: every round ran to its end (an interrupted group's file is kept too)
            done = sum(r.final and not r.error and not r.interrupted for r in runs)
            for r in runs:  # an earlier round's scratch files of groups written already
                drop_work_files(work, r.group, keep_log=True, rounds=max(1, len(r.parts)))
            sys.stderr.write(f"interrupted: {done} of {len(groups)} groups finished; "
                             f"records of {kept} groups kept in {out}\n")
            return Outcome((), interrupted=True)
        except OutputError as exc:  # a full or failing disk: keep what is written, stop
            for r in runs:
                drop_work_files(work, r.group, rounds=max(1, len(r.parts)))
            _remove_if_empty(work)
            kept = sum(r.written for r in runs)
            sys.stderr.write(f"nnparity run: error: {exc}; stopped, {kept} of {len(groups)} "
                             f"groups kept in {out}\n")
            return Outcome((), output_error=True)
        _remove_if_empty(work)
        return Outcome(tuple(f"{r.group.name}: {r.error}" for r in runs if r.error))


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


def executor_for(args: argparse.Namespace) -> Executor:
    """The executor the options ask for; bad combinations are one-line InputErrors.
    Executors are registered by name in `bench.timing.executor.EXECUTORS` and imported
    only when chosen (Ray's only when asked for), as `bench.cli.COMMANDS` registers
    commands."""
    name = getattr(args, "executor", None) or "local"
    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    machines = [m.strip() for part in (getattr(args, "machines", None) or [])
                for m in part.split(",") if m.strip()]
    if name == "local":
        if getattr(args, "address", None) or machines:
            raise InputError("--address and --machines need --executor ray")
        return LocalExecutor()
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(
        address=getattr(args, "address", None), machines=tuple(machines))


def check_environment() -> None:
    """Environment variables the workers read, checked before any worker starts: a bad
    one is bad input (exit 2, one line), not an error in every cell."""
    from impls.threads import interop_threads

    interop_threads()  # NNPARITY_INTEROP_THREADS: a positive integer or unset


def main(args: argparse.Namespace) -> int:
    _install_signal_handlers()
    RUN_START_LOAD[:] = [tuple(_loadavg())] if _loadavg() else []
    check_environment()
    if getattr(args, "out", None) is not None and not args.out.strip():
        raise InputError("--out '': an empty path (leave --out out for the default)")
    sel = selection_from_args(args)
    plan = plan_for(sel, args)
    shard = parse_shard(getattr(args, "shard", None))
    executor = executor_for(args)
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
    if not isinstance(executor, LocalExecutor) and plan.rounds > 1:
        plan = replace(plan, rounds=1)  # a cluster node runs one process per group
        sys.stderr.write("nnparity run: one round per group on this executor (--rounds is "
                         "for the local executor)\n")
    work = out / ".work"  # worker specs, logs and streams; hidden, so readers skip it
    try:
        work.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {work}: {exc.strerror or exc}") from None
    cells = sum(g.size for g in groups)
    progress = Progress(sum(round_cells(g, plan.rounds) for g in groups))
    sys.stderr.write(f"nnparity run: {cells} cells in {len(groups)} groups x {plan.rounds} "
                     f"round(s) ({len(groups) * plan.rounds} worker processes, each cell's "
                     f"order randomised per round), preset {sel.preset}, {threads} threads "
                     f"-> {out}\n")
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
    progress.close()
    sys.stderr.write(f"nnparity run: done in {clock(progress.elapsed)}; "
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
