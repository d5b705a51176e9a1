"""The worker: one process per (backend, task) group, timing its cells under pytest-benchmark.

`python -m bench.timing.worker_main run SPEC.json` sets the thread count before any framework
is imported, then runs pytest on this very file: `test_cell` is parametrised
with the group's cells (ids are the canonical cell ids), times each with
`benchmark.pedantic`, and streams every finished entry (ok or error) to a
JSON-lines file so the runner keeps them even if this process dies.
`python -m bench.timing.worker_main describe SPEC.json` reports a backend's version,
variants, devices, per-model support and the precision modes each variant offers
on each device as JSON, for building the matrix.

This file is only collected when the runner passes it to pytest; it must not
be imported by `bench/__init__` or the CLI (it imports frameworks).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from bench.results.paths import ROOT

SPEC_ENV = "NNPARITY_GROUP_SPEC"
PARENT_ENV = "NNPARITY_RUNNER_PID"  # the runner's pid: the worker exits when it is gone
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _spec() -> dict[str, Any]:
    return json.loads(Path(os.environ[SPEC_ENV]).read_text(encoding="utf-8"))


def pytest_generate_tests(metafunc: Any) -> None:
    if "item" not in metafunc.fixturenames:
        return
    from bench.results.schema import calibration_id
    from bench.timing.matrix import group_from_dict

    group = group_from_dict(_spec()["group"])
    items: list[tuple[str, Any]] = [("calibration", d) for d in group.calibrate_devices]
    items += [("cell", c) for c in group.cells]
    ids = [calibration_id(group.backend, v) if k == "calibration" else v.id for k, v in items]
    metafunc.parametrize("item", items, ids=ids)


_WORKER: list[Any] = []


def test_cell(benchmark: Any, item: tuple[str, Any]) -> None:
    if not _WORKER:
        from bench.timing.worker import Worker

        try:
            _WORKER.append(Worker(_spec()))
        except Exception as exc:  # e.g. the framework raises at import
            _WORKER.append(exc)
    worker = _WORKER[0]
    kind, what = item
    if isinstance(worker, BaseException):  # the backend failed to load: say why, per cell
        _record_load_error(kind, what, worker)
    if kind == "calibration":
        worker.calibrate(benchmark, what)
    else:
        worker.time_cell(benchmark, what)


def _record_load_error(kind: str, what: Any, exc: BaseException) -> None:
    import pytest

    from bench.results import write as records

    spec = _spec()
    message = f"backend failed to load: {type(exc).__name__}: {exc}".splitlines()[0][:500]
    if kind == "calibration":
        rec = records.calibration_record(spec["group"]["backend"], what, spec["preset"],
                                         spec["threads"], status="error", error=message)
    else:
        rec = records.record_for(what, spec["preset"], spec["threads"], status="error",
                                 error=message)
    records.append_stream(Path(spec["stream"]), records.benchmark_entry(rec))
    pytest.fail(message, pytrace=False)


def _rescue(spec_path: str, why: str) -> None:
    """The runner is gone: write the group's results file from what this worker has
    streamed so far, as the runner would have (`bench.timing.runner`: every round so
    far merged, each cell's interval, the run block the runner put in the spec), so no
    finished cell is lost and the file is valid."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if "result" not in spec:
        return
    from bench.results import write as records
    from bench.timing.environment import nnparity_info
    from bench.timing.matrix import group_from_dict

    group = group_from_dict(spec["group"])
    info = records.default_machine_info(nnparity_info(spec["threads"], spec.get("precisions")))
    # earlier rounds of this group (other processes) come first, as the runner merges them
    previous = spec.get("previous_rounds") or []
    docs = [records.group_document(group, spec["preset"], Path(pj), Path(st), info, "",
                                   spec["threads"]) for st, pj in previous]
    docs.append(records.group_document(group, spec["preset"], Path(spec["pytest_json"]),
                                       Path(spec["stream"]), info, why, spec["threads"]))
    records.write_group_file(Path(spec["result"]), records.merge_rounds(
        docs, spec.get("orders") or [[c.id for c in group.cells]] * len(docs),
        spec.get("run_block")))


def _reparented(parent: int, wait_s: float = 0.5) -> bool:
    """Whether the runner is gone (this process has another parent now). Asked from
    a second thread, it waits a little: Linux reparents a dying runner's children
    thread by thread and sends the death signal from the same loop, so this thread
    can still see the old parent for a moment after the signal (seen in the test
    suite: a cut-off cell put down as "worker terminated" although the runner died)."""
    end = time.monotonic() + wait_s
    while os.getppid() == parent:
        if time.monotonic() > end:
            return False
        time.sleep(0.01)  # not a timing: waiting for the kernel to finish reparenting
    return True


def _guard_parent(action: str, spec_path: str) -> None:
    """Exit when the runner dies (kill -9, a lost terminal), instead of running on with
    no parent: Linux signals us at once (PR_SET_PDEATHSIG), and a watcher thread also
    checks the parent pid, for other systems and for a parent that died before prctl.
    A `run` worker first writes its group's results file from its stream."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    gone = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: gone.set())
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher thread below still notices

    def watch() -> None:
        while not gone.wait(0.5) and os.getppid() == parent:
            pass
        why = "runner died" if _reparented(parent) else "worker terminated"
        if action == "run":
            try:
                _rescue(spec_path, f"{why} before this cell finished")
            except BaseException:  # nothing to report to: the runner is gone
                pass
        if os.getpgrp() == os.getpid():  # our own session (a run worker): our children too
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(143)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _MachineInfo:
    """pytest-benchmark hook: our `nnparity` block in machine_info."""

    def __init__(self, threads: int, precisions: list[str] | None = None) -> None:
        self.threads = threads
        self.precisions = precisions

    def pytest_benchmark_update_machine_info(self, config: Any, machine_info: dict) -> None:
        from bench.timing.environment import framework_threads, nnparity_info

        machine_info["nnparity"] = nnparity_info(self.threads, self.precisions)
        machine_info["nnparity"]["framework_threads"] = framework_threads()


def _run(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    process = spec["group"].get("process")
    if process:  # a tuned run's process setting (`run --settings`), before numpy loads
        from impls.settings import apply_process_environment

        apply_process_environment(process.get("env"), process.get("xla_flags"),
                                  process.get("unset"))
    from impls.threads import configure  # imports numpy

    threads = configure(spec["threads"])  # before any framework is imported
    os.environ[SPEC_ENV] = spec_path
    # a run started from inside a pytest-xdist worker (the test suite) inherits its
    # marker, and pytest-benchmark then disables itself: every cell would error
    for var in [v for v in os.environ if v.startswith("PYTEST_XDIST_")]:
        del os.environ[var]
    import pytest

    args = [
        str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        "-p", "no:xdist",
        "--rootdir", str(ROOT), "-o", "addopts=", "-o", "python_files=worker_main.py",
        "--benchmark-json", spec["pytest_json"], "--benchmark-disable-gc",
        "-W", "ignore::DeprecationWarning", "--no-header", "-rN", "--tb=line",
    ]
    code = pytest.main(args, plugins=[_MachineInfo(threads, spec.get("precisions"))])
    return 0 if code in (0, 1) else int(code)


def _describe(spec_path: str) -> int:
    """Print one JSON object describing a backend; never raises."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    from impls.threads import configure

    configure(spec["threads"])
    import impls
    from tasks import get_task

    name = spec["backend"]
    out: dict[str, Any] = {"backend": name, "installed": False, "error": "", "variants": [],
                           "devices": [], "supports": {}, "version": "",
                           "precision_support": {}}
    try:
        backend = impls.load(name)
        out.update(installed=True, version=backend.version(), variants=list(backend.variants),
                   devices=list(backend.devices()))
        for label, task_name, overrides in spec["configs"]:
            task = get_task(task_name)
            model = task.model(task.config(spec["preset"], dict(overrides)))
            out["supports"][label] = [v for v in backend.variants if backend.supports(model, v)]
            # label -> variant -> device -> modes a float32 program offers there
            out["precision_support"][label] = {
                v: {d: [p for p in impls.PRECISIONS
                        if backend.supports_precision(model, v, "float32", d, p)]
                    for d in backend.devices()}
                for v in out["supports"][label]}
    except Exception as exc:  # not installed, broken install: recorded, never fatal
        out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    print(json.dumps(out))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("run", "describe"):
        sys.stderr.write("usage: python -m bench.timing.worker_main run|describe SPEC.json\n")
        return 2
    start = time.perf_counter()
    _guard_parent(argv[0], argv[1])
    try:
        return _run(argv[1]) if argv[0] == "run" else _describe(argv[1])
    except Exception:
        traceback.print_exc()
        return 3
    finally:
        gc.collect()
        if os.environ.get("NNPARITY_DEBUG"):
            sys.stderr.write(f"worker {argv[0]} took {time.perf_counter() - start:.1f}s\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
