"""`nnparity run --executor ray`: each group on a node of a Ray cluster, cells streamed back.

The driver (this process) builds the matrix as a local run does, then sends
each (backend, task, device) group to one node as a Ray task running
`bench.distributed.node.run_group_on_node`. What keeps the numbers honest:

- One group per machine at a time: every task holds the node's whole benchmark
  slot, a custom resource `nnparity_slot` of 1 that each node declares
  (`ray start --resources='{"nnparity_slot": 1}'`), and is pinned to the node
  the driver chose for it; cuda groups also ask for `num_gpus=1`.
- The same code everywhere: the project directory is shipped with each task
  (Ray's runtime_env `working_dir`); the node also compares a digest of its
  code with the driver's and refuses the group if they differ. Every group file
  carries the driver's commit.
- `--machines NAME,...` routes groups to nodes whose label `nnparity-machine`,
  custom resource name or hostname is NAME; an unknown name is exit 2.

Finished cells are streamed back (Ray streaming generators) into the driver's
run directory as they complete and printed with the local run's progress line.
A node that dies costs only the group it was running: its finished cells are
kept and the rest recorded as error cells naming the node and Ray's reason; a
group the dead node had not started goes to another node; a group no live
node can run is recorded as errors. Ctrl-C cancels the remote tasks (which
kill their workers) and keeps every finished cell. Every node calibrates each
group's backend on that node, so each machine's % of peak is its own.

`RayScheduler` keeps the driver's books apart from Ray (which group waits, which
runs where, which node refused; what each node `Message` writes), so it is
tested message by message without a cluster; `RayExecutor._run` only feeds it
what Ray says. Ray is imported only when this executor runs; nothing else in
the project imports this module unless `--executor ray` is given.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bench.distributed.node import Message, code_digest, run_group_on_node
from bench.options import InputError
from bench.results import write as records
from bench.results.paths import ROOT
from bench.timing import environment
from bench.timing.executor import Outcome, RunContext
from bench.timing.matrix import Group
from bench.timing.watch import (
    WorkerSpec,
    group_file,
    recorded_precisions,
    spec_for,
    work_files,
)

SLOT = "nnparity_slot"  # the custom resource every benchmark node declares, 1 per node
LABEL = "nnparity-machine"  # node label naming a machine for --machines
# what the nodes do not need: history, caches, raw runs (possibly large), virtualenvs
EXCLUDES = [".git", ".nox", ".venv", "results/runs", "**/__pycache__", "*.egg-info",
            ".pytest_cache", ".ruff_cache", ".benchmarks", "build", "dist"]
EventHook = Callable[[str, Group, dict[str, Any]], None]


def worker_spec(ctx: RunContext, group: Group) -> WorkerSpec:
    """What a node's worker is told: the local runner's spec (`spec_for`), with the
    threads left to the node (all its cores) unless --threads fixed them."""
    return spec_for(ctx, group, ctx.threads if ctx.threads_set else None)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'nnparity[ray]'") from None
    return ray


#: seconds `ray.init` may take before the run gives up (exit 2, one line)
CONNECT_TIMEOUT_ENV = "NNPARITY_RAY_CONNECT_TIMEOUT"
CONNECT_TIMEOUT_S = 120.0


def connect_timeout() -> float:
    text = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    try:
        value = float(text) if text else CONNECT_TIMEOUT_S
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{CONNECT_TIMEOUT_ENV} must be a positive number of seconds, "
                         f"got {text!r}")
    return value


def _probe(address: str, where: str, ray: Any = None) -> None:
    """A host:port address where nothing listens fails at once, not after Ray's retries.
    Ray connects to a loopback address through the node's own IP, so that is tried too."""
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto" and the like: Ray resolves them
    hosts = [host.strip("[]")]
    if hosts[0] in ("127.0.0.1", "localhost", "::1") and ray is not None:
        try:
            hosts.append(ray.util.get_node_ip_address())
        except Exception:  # an older Ray, or no network: the loopback answer stands
            pass
    error: BaseException | None = None
    for name in hosts:
        try:
            socket.create_connection((name, int(port)), timeout=5).close()
            return
        except (OSError, OverflowError) as exc:
            error = exc
    raise InputError(f"cannot connect to Ray at {where}: "
                     f"{getattr(error, 'strerror', None) or error}")


def needs_gpu(group: Group) -> bool:
    """A group with a cuda cell runs only on a node with a GPU, and asks Ray for one."""
    return any(c.device == "cuda" for c in group.cells)


@dataclass(frozen=True)
class Node:
    """A live Ray node as the driver sees it."""

    id: str
    hostname: str
    resources: dict[str, float]
    labels: dict[str, str]

    @property
    def name(self) -> str:
        return self.labels.get(LABEL) or self.hostname or self.id[:8]

    def matches(self, machine: str) -> bool:
        return machine in (self.labels.get(LABEL), self.hostname) or machine in self.resources

    def can_run(self, group: Group) -> bool:
        return self.resources.get(SLOT, 0) >= 1 and (
            not needs_gpu(group) or self.resources.get("GPU", 0) >= 1)


def live_nodes(ray: Any) -> list[Node]:
    return [Node(n["NodeID"], str(n.get("NodeManagerHostname", "")),
                 dict(n.get("Resources") or {}), dict(n.get("Labels") or {}))
            for n in ray.nodes() if n.get("Alive")]


def split_by_device(groups: list[Group]) -> list[Group]:
    """One group per (backend, task, device), each calibrating its backend on its device
    (whichever node runs it), so GPU groups can ask for a GPU and each machine has its
    own calibration."""
    out = []
    for group in groups:
        devices = list(dict.fromkeys(c.device for c in group.cells))
        for device in devices:
            cells = tuple(c for c in group.cells if c.device == device)
            out.append(replace(group, cells=cells,
                               calibrate_devices=() if group.error else (device,),
                               part=device if len(devices) > 1 else ""))
    return out


@dataclass
class _Task:
    """A group sent to a node: whether the node has said it started, what it said about
    itself (the START message), and whether the group's file is written."""

    group: Group
    node: Node
    started: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    closed: bool = False


#: what stands for "no node" on a group closed before any node took it
NOWHERE = Node("", "", {}, {})


class RayScheduler:
    """The driver's bookkeeping for one Ray run, apart from Ray itself: which groups
    wait, which run where (by the handle `submit` returned), which nodes refused the
    group for running other code, and what each node `Message` does to the run
    directory. `RayExecutor._run` feeds it what Ray says; tests feed it directly.

    Every group ends closed exactly once: its file written (the node's document, or
    its streamed cells plus error entries for the rest) and, on an error, one line in
    `failed`. A group lost before its node started it goes back to the queue once."""

    def __init__(self, groups: list[Group], ctx: RunContext, progress: Any, commit: str,
                 emit: EventHook | None = None) -> None:
        self.ctx, self.progress, self.commit = ctx, progress, commit
        self.emit: EventHook = emit or (lambda kind, group, data: None)
        self.total = len(groups)
        self.pending: deque[Group] = deque(groups)
        self.running: dict[Any, _Task] = {}  # handle (a Ray generator) -> its task
        self.retried: set[str] = set()  # groups already sent again after a loss
        self.refused: set[str] = set()  # nodes whose code differs: never asked again
        self.failed: list[str] = []
        self.finished = 0

    @property
    def active(self) -> bool:
        return bool(self.pending or self.running)

    # -- sending groups to nodes --------------------------------------------------------------

    def schedule(self, nodes: list[Node], submit: Callable[[Group, Node], Any]) -> None:
        """Send each waiting group, in order, to the first free node that can run it
        (`submit` returns the handle its messages come by); close as an error a group
        that no live node could ever run."""
        nodes = [n for n in nodes if n.id not in self.refused]
        busy = {t.node.id for t in self.running.values()}
        for group in list(self.pending):
            able = [n for n in nodes if n.can_run(group)]
            if not able:  # no live machine can ever take it now
                self.pending.remove(group)
                self.close(_Task(group, NOWHERE), self._unrunnable(group))
                continue
            free = [n for n in able if n.id not in busy]
            if free:
                self.pending.remove(group)
                self.running[submit(group, free[0])] = _Task(group, free[0])
                busy.add(free[0].id)

    @staticmethod
    def _unrunnable(group: Group) -> str:
        gpu = " and a GPU" if needs_gpu(group) else ""
        return f"no live Ray node can run this group (lost, refused or lacking {SLOT}{gpu})"

    # -- what Ray says about a running group --------------------------------------------------

    def handle(self, handle: Any, message: Message) -> None:
        """A message of the node running `handle` (see bench/distributed/node.py)."""
        task = self.running[handle]
        kind, data, error = message
        if kind == Message.START:
            task.started, task.info = True, dict(data)
            self.emit("start", task.group, {**task.info, "resources": task.node.resources})
        elif kind == Message.CELL:
            records.append_stream(work_files(self.ctx.work, task.group.name).stream, data)
            self.progress.advance(data)
            self.emit("cell", task.group, {"node": task.node.id, "name": task.node.name,
                                           "entry": data})
        elif kind == Message.REFUSED:
            self.refused.add(task.node.id)
            self.close(task, data)
        elif kind == Message.DONE:
            self.close(task, error, doc=data)

    def ended(self, handle: Any) -> None:
        """The node's stream of messages ended: its group is over, written or not."""
        task = self.running.pop(handle)
        if not task.closed:
            self.close(task, f"the task on {task.node.name} ended without its results")

    def lost(self, handle: Any, reason: str) -> None:
        """Ray lost the task (its node died, its worker crashed): a group its node had
        not started goes back to the queue, once; else what it streamed is kept and
        the rest recorded as errors naming the node and `reason`."""
        task = self.running.pop(handle)
        if task.closed:  # its document had arrived: the group is complete
            return
        if not task.started and task.group.name not in self.retried:
            self.retried.add(task.group.name)  # never started: another node takes it
            self.pending.appendleft(task.group)
            return
        self.close(task, f"lost on Ray node {task.node.name}: {reason}")

    def interrupt(self) -> Outcome:
        """Ctrl-C: close every running group (its finished cells are kept)."""
        done = self.finished
        for task in self.running.values():
            if not task.closed:
                self.close(task, "interrupted")
        sys.stderr.write(f"interrupted: {done} of {self.total} "
                         f"groups finished; records kept in {self.ctx.out}\n")
        return Outcome(tuple(self.failed), interrupted=True)

    def outcome(self) -> Outcome:
        return Outcome(tuple(self.failed))

    # -- writing a group's file ---------------------------------------------------------------

    def close(self, task: _Task, error: str, doc: dict[str, Any] | None = None) -> None:
        """Write the group's file: the node's own document, or (without one) the cells
        streamed so far with error entries for the rest."""
        out = group_file(self.ctx.out, task.group.name)
        if doc is not None:
            records.write_group_file(out, doc)
        else:
            files = work_files(self.ctx.work, task.group.name)
            records.finish_group(task.group, self.ctx.sel.preset, out, files.pytest_json,
                                 files.stream, self._machine_info(task), error,
                                 self.ctx.threads)
        task.closed = True
        self.finished += 1
        if error:
            self.failed.append(f"{task.group.name} on {task.node.name}: {error}")
        self.emit("done", task.group, {"node": task.node.id, "error": error})

    def _machine_info(self, task: _Task) -> dict[str, Any]:
        """The machine block for a group the node could not finish: the node's identity
        when it said who it is, else this machine's (the group ran nowhere)."""
        ctx = self.ctx
        ours = environment.nnparity_info(ctx.threads, recorded_precisions(ctx.sel.precisions))
        if task.info:
            ours.update({k: task.info[k] for k in ("fingerprint", "cpu", "cores", "gpu")
                         if k in task.info})
            ours["ray_node"] = task.info
        ours["git_commit"] = self.commit
        return records.default_machine_info(ours)


class RayExecutor:
    def __init__(self, address: str | None = None, machines: tuple[str, ...] = (),
                 on_event: EventHook | None = None, poll_s: float = 0.5) -> None:
        self.address, self.machines = address, machines
        self.on_event = on_event  # tests watch the run through it
        self.poll_s = poll_s
        #: undoes the run directory if the connection deadline passes (set by the runner)
        self.abandon: Callable[[], None] | None = None

    def prepare(self, groups: list[Group]) -> list[Group]:
        import_ray()
        return split_by_device(groups)

    # -- connecting ---------------------------------------------------------------------------

    def _connect(self, ray: Any) -> bool:
        """Connect unless already connected; True when this executor owns the connection.
        A connection made elsewhere without our working_dir still runs only the same code:
        each node checks its code digest against the driver's."""
        if ray.is_initialized():
            return False
        import logging

        address = self.address or os.environ.get("RAY_ADDRESS")
        # Ray uploads a local working_dir only for a whole job, i.e. at ray.init
        options = {"runtime_env": {"working_dir": str(ROOT), "excludes": EXCLUDES},
                   "log_to_driver": False, "logging_level": logging.WARNING}
        where = address or "a new local instance"
        if address:
            _probe(address, where, ray)

        def init() -> None:
            if address:
                ray.init(address=address, **options)
            else:  # a one-machine Ray: this machine is the only node and has the slot
                ray.init(resources={SLOT: 1}, include_dashboard=False, **options)

        # ray.init retries an unreachable cluster ("Failed to get cluster ID") without end,
        # inside Ray's C++ client where no Python exception can reach it: a watchdog thread
        # gives up at the deadline, undoes the run directory (`abandon`) and exits 2
        timeout = connect_timeout()

        def give_up() -> None:
            try:
                if self.abandon is not None:
                    self.abandon()
            finally:
                sys.stderr.write(f"nnparity run: error: cannot connect to Ray at {where}: no "
                                 f"answer within {timeout:g} s ({CONNECT_TIMEOUT_ENV} sets "
                                 "the deadline)\n")
                sys.stderr.flush()
                os._exit(2)

        watchdog = threading.Timer(timeout, give_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            init()
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot connect to Ray at {where}: {first}") from None
        finally:
            watchdog.cancel()
        return True

    def _eligible(self, ray: Any, check: bool = False) -> list[Node]:
        """Live nodes with a slot among --machines; `check`: an unknown name is an error
        (only at the start: a named machine that dies later just stops being eligible)."""
        nodes = live_nodes(ray)
        for machine in self.machines if check else ():
            if not any(n.matches(machine) for n in nodes):
                known = sorted({n.name for n in nodes})
                raise InputError(f"unknown machine {machine!r}; live Ray machines: "
                                 f"{', '.join(known) or 'none'}")
        return [n for n in nodes if n.resources.get(SLOT, 0) >= 1
                and (not self.machines or any(n.matches(m) for m in self.machines))]

    # -- running ------------------------------------------------------------------------------

    def run(self, groups: list[Group], ctx: RunContext, progress: Any) -> Outcome:
        ray = import_ray()
        owns = self._connect(ray)
        try:
            if not self._eligible(ray, check=True):
                raise InputError(f"no live Ray node offers the {SLOT!r} resource"
                                 + (f" among {', '.join(self.machines)}" if self.machines else "")
                                 + f"; start nodes with --resources='{{\"{SLOT}\": 1}}'")
            return self._run(ray, groups, ctx, progress)
        finally:
            if owns:
                ray.shutdown()

    def _run(self, ray: Any, groups: list[Group], ctx: RunContext, progress: Any) -> Outcome:
        """Send groups to free nodes and relay what their tasks stream, until every
        group is closed (`RayScheduler` keeps the books)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(run_group_on_node)
        digest, commit = code_digest(), environment.git_commit()
        books = RayScheduler(groups, ctx, progress, commit, self._emit)

        def submit(group: Group, node: Node) -> Any:
            return remote.options(
                num_cpus=0, num_gpus=int(needs_gpu(group)), resources={SLOT: 1}, max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.id, soft=False),
                name=f"nnparity:{group.name}",
            ).remote(worker_spec(ctx, group), ctx.timeout, digest, commit,
                     {"id": node.id, "name": node.name, "labels": node.labels})

        try:
            while books.active:
                books.schedule(self._eligible(ray), submit)
                if not books.running:
                    continue
                ready, _ = ray.wait(list(books.running), num_returns=1, timeout=self.poll_s)
                for gen in ready:
                    try:
                        message = ray.get(next(gen))
                    except StopIteration:
                        books.ended(gen)
                    except ray.exceptions.RayError as exc:
                        books.lost(gen, _reason(exc))
                    else:
                        books.handle(gen, Message(*message))
        except KeyboardInterrupt:
            for gen in books.running:
                try:
                    ray.cancel(gen)  # KeyboardInterrupt in the task: it kills its worker
                except Exception:  # noqa: BLE001 - an already finished task cannot be cancelled
                    pass
            return books.interrupt()
        return books.outcome()

    def _emit(self, kind: str, group: Group, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(kind, group, data)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")

