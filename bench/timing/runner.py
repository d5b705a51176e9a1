"""Timing the benchmark matrix on this machine: the local executor and the run directory,
the library of `nnparity run` (its command, bench/commands/run.py, validates the
selection and chooses the executor).

`describe` asks each backend's worker to describe itself (variants, devices,
which variants fit which model). `LocalExecutor` runs the groups one after
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

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import impls
from bench.options import (
    InputError,
    OutputError,
)
from bench.results import write as records
from bench.results.paths import ROOT, RUNS
from bench.results.schema import STEADY_PHASES
from bench.results.write import write_text_atomic
from bench.timing import environment
from bench.timing.executor import Outcome, Progress, RunContext
from bench.timing.matrix import (
    Group,
    Plan,
    Selection,
    round_order,
    round_plan,
    task_configs,
)
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

DESCRIBE_CACHE = RUNS / ".describe-cache"  # git-ignored with raw runs


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


def note_run_start() -> None:
    """Record the load averages as the run starts (`RUN_START_LOAD`), before describing."""
    RUN_START_LOAD[:] = [tuple(_loadavg())] if _loadavg() else []


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
                           gradcheck and r == 0, plan,
                           final=planned == 1 and not plan.extra_rounds)
    for _ in range(plan.extra_rounds):
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
                               gradcheck, round_plan(plan), run_block(run, seed, sel.settings))
    except KeyboardInterrupt:
        run.interrupted = True
        try:
            _write_rounds(run, sel, out, work, threads, "interrupted", seed, final=True)
        except OutputError as exc:  # say why this group's records are lost, stay interrupted
            drop_work_files(work, run.group, rounds=len(run.parts))
            sys.stderr.write(f"nnparity run: error: {exc}\n")
        raise
    if error:
        if r < planned:
            run.error = error if planned == 1 else f"round {r + 1} of {planned}: {error}"
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
               plan: Plan, block: dict[str, Any]) -> str:
    """Run the last of `parts` (round len(parts) - 1) in a fresh worker process; `block`
    is the run block its group file carries, should the worker have to write it."""
    r, part = len(parts) - 1, parts[-1]
    files = round_files(work, part, r)
    for path in (files.stream, files.pytest_json):
        path.unlink(missing_ok=True)
    spec = WorkerSpec(part, sel.preset, plan, threads, seed, gradcheck, tuple(sel.precisions))
    write_text_atomic(files.spec, json.dumps({
        **spec.to_json(files, threads, group_file(out, part.name)),
        # a worker whose runner dies writes the group file from every round so far
        "round": r, "orders": [[c.id for c in p.cells] for p in parts], "run_block": block,
        "previous_rounds": [[str(p) for p in round_files(work, part, k)[:2]] for k in range(r)],
    }))
    cells = follow(files.spec, files.log, files.stream, timeout, env=_worker_env())
    return run_through(relay(cells, progress.advance))


def _merged(run: GroupRun, sel: Selection, work: Path, threads: int, error: str, seed: int,
            intervals: bool = True) -> dict[str, Any]:
    """The group's document from the rounds that ran (their streams and pytest-benchmark
    files), with error entries for what the last round never reached (`error`)."""
    group, parts = run.group, run.parts
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
    return records.merge_rounds(docs, [[c.id for c in p.cells] for p in parts or [group]],
                                run_block(run, seed, sel.settings), intervals=intervals)


def run_block(run: GroupRun, seed: int, settings: Sequence[tuple[str, str]] = ()
              ) -> dict[str, Any]:
    """The group file's run block (`nnparity_run`, which `validate` checks and the report
    reads): the rounds planned and run so far, their order's seed, the extra rounds'
    sizes, the target, the machine's load while the group ran, and a tuned run's
    settings (`run --settings`)."""
    planned = max(1, run.plan.rounds)
    return {"rounds": planned, "rounds_run": len(run.parts), "order_seed": seed,
            "extra_rounds": [len(p.cells) for p in run.parts[planned:]],
            "target_ci": run.plan.target_ci, "machine_load": run.load.block(),
            **({"settings": dict(settings)} if settings else {})}


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
