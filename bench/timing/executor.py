"""How `nnparity run` executes its groups: the executor interface, the executors by
name and the `Progress` line every executor feeds.

The runner builds the matrix and hands the groups to an executor, which runs
each group (one worker process at a time per machine), feeds every finished
cell to the shared `Progress` line and writes each group's results file into
the run directory. `local` (bench/timing/runner.py, the default) runs the
groups one after another on this machine; `ray` (bench/distributed/ray_executor.py)
sends each group to a node of a Ray cluster. Ray is imported only when asked for:
`bench.commands.run.executor_for` imports the chosen one by its name here (the
`--executor` options are that command's).

This module holds no execution itself and must not import a framework or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.progress import ProgressLine
from bench.timing.matrix import Group, Plan, Selection

# executor name -> "module:class", imported only when chosen (Ray's only for `ray`)
EXECUTORS: dict[str, str] = {
    "local": "bench.timing.runner:LocalExecutor",
    "ray": "bench.distributed.ray_executor:RayExecutor",
}


@dataclass(frozen=True)
class RunContext:
    """Everything an executor needs besides the groups: the same for every group."""

    sel: Selection
    plan: Plan
    out: Path  # the run directory: one <group>.json per group
    work: Path  # worker specs, logs and streams (out/.work)
    threads: int  # threads for every framework on this machine
    threads_set: bool  # the user fixed --threads (else a remote machine uses all its cores)
    seed: int
    timeout: float  # seconds per group before it is killed
    gradcheck: bool


@dataclass(frozen=True)
class Outcome:
    """What the run did: group-level errors (one line each), and whether Ctrl-C or an
    unwritable output ended it."""

    failed: tuple[str, ...] = ()
    interrupted: bool = False
    output_error: bool = False  # a results file could not be written (disk full, ...)


class Progress(ProgressLine):
    """Cells done / total with the rate and ETA (bench/progress.py), a line per finished
    cell with its median and IQR; `total` grows when extra rounds are scheduled."""

    def __init__(self, total: int) -> None:
        super().__init__(total, "cells")

    def advance(self, entry: dict[str, Any]) -> None:  # type: ignore[override]
        info, stats = entry.get("extra_info", {}), entry.get("stats", {})
        if info.get("status") == "ok":
            median, iqr = stats.get("median"), stats.get("iqr")
            what = f"{median * 1e3:9.3f} ms  IQR {iqr / median:4.0%}" if median else ""
        else:
            what = f"ERROR {info.get('error', '')[:60]}"
        super().advance(f"{info.get('cell', '?')}  {what}")


class Executor(Protocol):
    def prepare(self, groups: list[Group]) -> list[Group]:
        """The groups as this executor will run them (e.g. split by device), before the
        progress total is counted; checks that the executor can run at all."""
        ...

    def run(self, groups: list[Group], ctx: RunContext, progress: Progress) -> Outcome:
        """Run every group; every group's file is in `ctx.out` when this returns,
        including on interruption (unfinished cells recorded as errors)."""
        ...


