"""Start one benchmark worker and follow it: what the local runner and a Ray node
share, so the two cannot drift apart.

`WorkerSpec` is what a worker is told (the same for both: built once from the
run's context, `spec_for`), `work_files` names a group's scratch files and
`group_file` its results file, and `relay` is the one loop that drains the
worker's stream.

`follow` starts `bench.timing.worker_main` in its own session, polls the JSON
lines it streams (one per finished cell) and yields each new entry as it
appears; its return value (`StopIteration.value`) is "" or the group-level
error: a timeout (the worker and its children are killed) or a non-zero exit
(with the tail of its log). On any exception or when the generator is closed
(Ctrl-C, a cancelled Ray task) the worker is killed before it propagates, so
no benchmark outlives the process that owns it. This module imports no
framework and times nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from bench.results import write as records
from bench.results.paths import ROOT
from bench.results.schema import STRICT_PRECISION
from bench.timing.executor import RunContext
from bench.timing.matrix import Group, Plan, group_to_dict

POLL_S = 0.2  # how often the worker's stream is read (not a timing: nothing is timed here)

T = TypeVar("T")
R = TypeVar("R")


class WorkFiles(NamedTuple):
    """A group's scratch files in a work directory (the run's `.work`, or a node's)."""

    stream: Path  # the worker's finished cells, one JSON line each
    pytest_json: Path  # pytest-benchmark's own output
    spec: Path  # the worker's spec (`WorkerSpec.to_json`)
    log: Path  # the worker's stdout and stderr


def work_files(work: Path, name: str) -> WorkFiles:
    """The scratch files of the group called `name` (`Group.name`) in `work`."""
    return WorkFiles(work / f"{name}.jsonl", work / f"{name}.pytest-out",
                     work / f"{name}.spec", work / f"{name}.log")


def group_file(out: Path, name: str) -> Path:
    """The results file of the group called `name` (`Group.name`) in run directory `out`."""
    return out / f"{name}.json"


def recorded_precisions(precisions: Sequence[str]) -> list[str] | None:
    """The precision modes a run records in its machine block (None: strict only)."""
    return list(precisions) if tuple(precisions) != (STRICT_PRECISION,) else None


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker is told about its group, whoever starts it (`bench.timing.
    worker_main` reads it). `threads` None: every core of the machine it runs on."""

    group: Group
    preset: str
    plan: Plan
    threads: int | None
    seed: int
    gradcheck: bool
    precisions: tuple[str, ...]  # the run's precision modes (the group's cells use them)

    @property
    def recorded_precisions(self) -> list[str] | None:
        return recorded_precisions(self.precisions)

    def to_json(self, files: WorkFiles, threads: int, result: Path | None = None
                ) -> dict[str, Any]:
        """The spec file's content on the machine that runs it. `result`: where the
        worker writes the group's file itself should its runner die (local runs)."""
        process = self.group.process
        if process is not None and process.threads:  # a tuned run's thread setting, for
            from impls.settings import resolve_threads  # this machine's cores

            threads = resolve_threads(process.threads)
        return {
            "group": group_to_dict(self.group), "preset": self.preset, "threads": threads,
            "seed": self.seed, "stream": str(files.stream),
            "pytest_json": str(files.pytest_json), "gradcheck": self.gradcheck,
            "plan": asdict(self.plan), "precisions": self.recorded_precisions,
            # float32 cells measure their error against float64 when reduced modes run,
            # so the strict cell's error stands beside theirs in the report
            "precision_errors": any(p != STRICT_PRECISION for p in self.precisions),
            **({"result": str(result)} if result is not None else {}),
        }


def spec_for(ctx: RunContext, group: Group, threads: int | None) -> WorkerSpec:
    """The spec of `group` in a run (`bench.timing.executor.RunContext`)."""
    return WorkerSpec(group, ctx.sel.preset, ctx.plan, threads, ctx.seed, ctx.gradcheck,
                      tuple(ctx.sel.precisions))


def relay(cells: Generator[T, None, R], each: Callable[[T], Any]) -> Generator[Any, None, R]:
    """The one loop that drains a worker's stream: yield `each(entry)` for every entry
    `cells` (a `follow`) yields, return its return value (the group's error), and close
    it however this ends, which kills the worker (Ctrl-C, a cancelled Ray task)."""
    try:
        while True:
            try:
                entry = next(cells)
            except StopIteration as done:
                return done.value
            yield each(entry)
    finally:
        cells.close()


def run_through(gen: Generator[Any, None, R]) -> R:
    """Run a generator to its end and return its return value (its items are dropped)."""
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


def worker_command(action: str, spec: Path) -> list[str]:
    """The worker process's command line (`bench.timing.worker_main`)."""
    return [sys.executable, "-m", "bench.timing.worker_main", action, str(spec)]


def log_tail(path: Path, lines: int = 3) -> str:
    """The last `lines` lines of a log on one line (at most 400 characters)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-400:]


def kill(proc: subprocess.Popen) -> None:
    """Stop a worker started here, and its children (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def follow(spec: Path, log: Path, stream: Path, timeout: float, *,
           env: Mapping[str, str] | None = None,
           preexec_fn: Callable[[], None] | None = None,
           ) -> Generator[dict[str, Any], None, str]:
    """Run the worker for `spec`; yield its streamed cell entries; return its error ("")."""
    with log.open("w") as fh:
        proc = subprocess.Popen(worker_command("run", spec), cwd=ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=None if env is None else dict(env), preexec_fn=preexec_fn)
    start, seen = time.monotonic(), 0
    try:
        while True:
            finished = proc.poll() is not None
            entries = records.read_stream(stream)
            yield from entries[seen:]
            seen = len(entries)
            if finished:
                break
            if time.monotonic() - start > timeout:
                kill(proc)
                return f"group timed out after {timeout:g}s (hang?)"
            time.sleep(POLL_S)
    except BaseException:  # Ctrl-C, SIGTERM, a cancelled task, a closed generator
        kill(proc)
        raise
    if proc.returncode != 0:
        return f"worker exited with code {proc.returncode}: {log_tail(log)}"
    return ""
