"""How `nnparity run` executes its groups: the executor interface and the choice of one.

The runner builds the matrix and hands the groups to an executor, which runs
each group (one worker process at a time per machine), feeds every finished
cell to the shared `Progress` line and writes each group's results file into
the run directory. `local` (bench/timing/runner.py, the default) runs the
groups one after another on this machine; `ray` (bench/distributed/ray_executor.py)
sends each group to a node of a Ray cluster. Ray is imported only when asked for.

This module holds no execution itself and must not import a framework or Ray.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bench.options import InputError
from bench.timing.matrix import Group, Plan, Selection

if TYPE_CHECKING:
    from bench.timing.runner import Progress

EXECUTORS = ("local", "ray")


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


class Executor(Protocol):
    def prepare(self, groups: list[Group]) -> list[Group]:
        """The groups as this executor will run them (e.g. split by device), before the
        progress total is counted; checks that the executor can run at all."""
        ...

    def run(self, groups: list[Group], ctx: RunContext, progress: Progress) -> Outcome:
        """Run every group; every group's file is in `ctx.out` when this returns,
        including on interruption (unfinished cells recorded as errors)."""
        ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg("--executor", default="local", help=f"one of {', '.join(EXECUTORS)} (default local)")
    arg("--address", default=None,
        help="Ray cluster address for --executor ray (default: RAY_ADDRESS or a local Ray)")
    arg("--machines", action="append", default=None,
        help="comma list of Ray machines (node label nnparity-machine, or a custom "
             "resource name, or a hostname) to run on; default every node with a slot")


def executor_for(args: argparse.Namespace) -> Executor:
    """The executor the options ask for; bad combinations are one-line InputErrors."""
    name = getattr(args, "executor", None) or "local"
    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    machines = [m.strip() for part in (getattr(args, "machines", None) or [])
                for m in part.split(",") if m.strip()]
    if name == "local":
        if getattr(args, "address", None) or machines:
            raise InputError("--address and --machines need --executor ray")
        from bench.timing.runner import LocalExecutor

        return LocalExecutor()
    from bench.distributed.ray_executor import RayExecutor  # imports Ray lazily, when run

    return RayExecutor(address=getattr(args, "address", None), machines=tuple(machines))
