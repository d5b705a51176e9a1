"""The node side of the Ray executor: run one group on this machine and stream its cells.

`run_group_on_node` runs inside a Ray task on a cluster node (bench/distributed/
ray_executor.py sends it). It is a generator of `Message`s for the driver, in this
order: one START, then either one REFUSED (nothing ran) or a CELL per finished
entry and one DONE last.

It starts the same worker process a local run starts (`bench.timing.worker_main`,
in its own session, tied to this Ray worker so it dies with it) and watches
its stream with the runner's own spec and loop (`bench.timing.watch`): group timeout, the
worker's exit code, error entries for cells never reached. Cancelling the Ray
task (Ctrl-C on the driver) kills the worker. The machine block is this
node's; its commit is the driver's, since the code was shipped from there.

This module imports no framework, and Ray only to ask which node it runs on;
it never writes outside its temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from bench.results import write as records
from bench.results.paths import ROOT
from bench.timing import environment
from bench.timing.watch import WorkerSpec, follow, group_file, relay, work_files

CODE_DIRS = ("tasks", "impls", "bench")


class Message(NamedTuple):
    """One message of a node to the driver (`RayScheduler.handle` reads them). A named
    tuple, so it crosses Ray as a plain tuple in the order of its fields."""

    START = "start"  # `data`: the node's description (which machine took the group)
    REFUSED = "refused"  # `data`: why (this node's code differs from the driver's)
    CELL = "cell"  # `data`: one finished benchmark entry, as it is streamed
    DONE = "done"  # `data`: the group's complete document; `error`: its group-level error

    kind: str  # one of the four above
    data: Any
    error: str = ""


def code_digest(root: Path = ROOT) -> str:
    """A digest of the project's Python code: equal on two machines iff they run the same
    code (what a version string or a dirty commit cannot promise)."""
    digest = hashlib.sha1()
    for top in CODE_DIRS:
        for path in sorted((root / top).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _die_with_parent() -> None:
    """In the worker's child before exec: SIGKILL it when this Ray worker dies (a lost
    node, a forced cancel), so no benchmark outlives the task that owns it (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_group_on_node(spec: WorkerSpec, timeout: float, driver_digest: str, commit: str,
                      node: Mapping[str, Any]) -> Iterator[Message]:
    """Run `spec`'s group here and yield the driver's messages (see the module docstring).
    `spec.threads` None: every core of this machine."""
    group = spec.group
    node = {**node, **describe_node(), "ran_on": _ray_node_id()}
    yield Message(Message.START, node)
    mine = code_digest()
    if mine != driver_digest:
        yield Message(Message.REFUSED,
                      f"node {node.get('name', '?')} runs other code (digest {mine}, "
                      f"driver {driver_digest}); ship it or check out the same commit")
        return
    threads = spec.threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="nnparity-node-") as tmp:
        work = Path(tmp)
        files = work_files(work, group.name)
        files.spec.write_text(json.dumps(spec.to_json(files, threads)))
        machine_info = records.default_machine_info(
            environment.nnparity_info(threads, spec.recorded_precisions))
        error = group.error
        if not error:
            cells = follow(files.spec, files.log, files.stream, timeout,
                           preexec_fn=_die_with_parent)
            error = yield from relay(cells, lambda entry: Message(Message.CELL, entry))
        doc = records.finish_group(group, spec.preset, group_file(work, group.name),
                                   files.pytest_json, files.stream, machine_info, error, threads)
        ours = doc.setdefault("machine_info", {}).setdefault("nnparity", {})
        ours.update(git_commit=commit, code_digest=mine, ray_node=dict(node),
                    code_source="shipped from the driver (Ray runtime_env working_dir)")
        yield Message(Message.DONE, doc, error)


def _ray_node_id() -> str:
    """The Ray node this task actually runs on, as Ray itself says (not as asked)."""
    try:
        import ray  # present: this function runs inside a Ray task

        if not ray.is_initialized():  # called outside Ray (tests): asking would start one
            return ""
        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 - called outside Ray (tests): unknown
        return ""


def describe_node() -> dict[str, Any]:
    """This machine in words, for the driver's records (what `ray.nodes()` cannot say)."""
    cpu, gpu, cores = environment.cpu_model(), environment.gpu_model(), os.cpu_count() or 1
    return {"hostname": platform.node(), "cpu": cpu, "cores": cores, "gpu": gpu,
            "fingerprint": environment.fingerprint(cpu, cores, gpu)}
