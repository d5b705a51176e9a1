"""The worker: one process per (backend, task) group, timing its cells under pytest-benchmark.

`python -m bench.timing.worker_main run SPEC.json` sets the thread count before any framework
is imported, then runs pytest on this very file: `test_cell` is parametrised
with the group's cells (ids are the canonical cell ids), times each with
`benchmark.pedantic`, and streams every finished entry (ok or error) to a
JSON-lines file so the runner keeps them even if this process dies.
`python -m bench.timing.worker_main describe SPEC.json` reports a backend's version,
variants, devices and per-model support as JSON, for building the matrix.

This file is only collected when the runner passes it to pytest; it must not
be imported by `bench/__init__` or the CLI (it imports frameworks).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.results.paths import ROOT

SPEC_ENV = "NNPARITY_GROUP_SPEC"


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

        _WORKER.append(Worker(_spec()))
    worker = _WORKER[0]
    kind, what = item
    if kind == "calibration":
        worker.calibrate(benchmark, what)
    else:
        worker.time_cell(benchmark, what)


class _MachineInfo:
    """pytest-benchmark hook: our `nnparity` block in machine_info."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def pytest_benchmark_update_machine_info(self, config: Any, machine_info: dict) -> None:
        from bench.timing.environment import framework_threads, nnparity_info

        machine_info["nnparity"] = nnparity_info(self.threads)
        machine_info["nnparity"]["framework_threads"] = framework_threads()


def _run(spec_path: str) -> int:
    from impls.threads import configure

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    threads = configure(spec["threads"])  # before any framework is imported
    os.environ[SPEC_ENV] = spec_path
    import pytest

    args = [
        str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        "--rootdir", str(ROOT), "-o", "addopts=", "-o", "python_files=worker_main.py",
        "--benchmark-json", spec["pytest_json"], "--benchmark-disable-gc",
        "-W", "ignore::DeprecationWarning", "--no-header", "-rN", "--tb=line",
    ]
    code = pytest.main(args, plugins=[_MachineInfo(threads)])
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
                           "devices": [], "supports": {}, "version": ""}
    try:
        backend = impls.load(name)
        out.update(installed=True, version=backend.version(), variants=list(backend.variants),
                   devices=list(backend.devices()))
        for label, task_name, overrides in spec["configs"]:
            task = get_task(task_name)
            model = task.model(task.config(spec["preset"], dict(overrides)))
            out["supports"][label] = [v for v in backend.variants if backend.supports(model, v)]
    except Exception as exc:  # not installed, broken install: recorded, never fatal
        out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    print(json.dumps(out))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("run", "describe"):
        sys.stderr.write("usage: python -m bench.timing.worker_main run|describe SPEC.json\n")
        return 2
    start = time.perf_counter()
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
