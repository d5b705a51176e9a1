"""The raw results format on the writing side: extra_info records and group files.

Every timed or failed cell becomes one pytest-benchmark "benchmark" entry whose
`extra_info` is a `CellRecord`. A group's file is the JSON pytest-benchmark
wrote (`--benchmark-json`, raw samples included), completed with error entries
for cells that never finished; when the worker died before pytest-benchmark
could write, the file is assembled here from the records the worker streamed,
in the same format, so `pytest-benchmark compare` and `bench.results.read` read both.
Files are written atomically. This module times nothing and imports no framework.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from bench.options import OutputError
from bench.results.schema import (
    CALIBRATION,
    CALIBRATION_TASK,
    CellRecord,
    calibration_id,
    stats_block,
)

TEST_FUNCTION = "bench/timing/worker_main.py::test_cell"


# The cell and group as this module reads them (`bench.timing.matrix.Cell` and
# `Group` fit): the results format sits below timing and does not import it.
class _Config(Protocol):
    task: str
    knobs: Any


class Cell(Protocol):
    id: str
    config: _Config
    backend: str
    variant: str
    device: str
    dtype: str
    batch_size: int
    phase: str
    precision: str


class Group(Protocol):
    backend: str
    calibrate_devices: tuple[str, ...]
    cells: Any  # a sequence of Cell




def record_for(cell: Cell, preset: str, threads: int | None, **values: Any) -> CellRecord:
    return CellRecord(
        cell=cell.id, task=cell.config.task, preset=preset, backend=cell.backend,
        variant=cell.variant, device=cell.device, dtype=cell.dtype, batch_size=cell.batch_size,
        phase=cell.phase, knobs=dict(cell.config.knobs), threads=threads,
        precision_mode=cell.precision, setting=cell.setting, **values,
    )


def calibration_record(backend: str, device: str, preset: str, threads: int | None,
                       **values: Any) -> CellRecord:
    return CellRecord(
        cell=calibration_id(backend, device), task=CALIBRATION_TASK, preset=preset,
        backend=backend, variant=values.pop("variant", ""), device=device, dtype="float32",
        batch_size=None, phase=CALIBRATION, threads=threads, **values,
    )


def benchmark_entry(record: CellRecord, samples: list[float] | None = None) -> dict[str, Any]:
    """A pytest-benchmark "benchmark" dict; without samples its stats are NaN (an error)."""
    data = list(samples or [])
    return {
        "group": None,
        "name": f"test_cell[{record.cell}]",
        "fullname": f"{TEST_FUNCTION}[{record.cell}]",
        "params": {"cell": record.cell},
        "param": record.cell,
        "extra_info": record.to_extra_info(),
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 1,
                    "max_time": 0.0, "min_time": 0.0, "warmup": False},
        "stats": stats_block(data),
    }


def error_entries(group: Group, preset: str, error: str, done: set[str],
                  threads: int | None) -> list[dict[str, Any]]:
    """Error entries for every cell of `group` (calibration included) not in `done`."""
    entries = []
    for device in group.calibrate_devices:
        cid = calibration_id(group.backend, device)
        if cid not in done:
            rec = calibration_record(group.backend, device, preset, threads, status="error",
                                     error=error)
            entries.append(benchmark_entry(rec))
    for cell in group.cells:
        if cell.id not in done:
            rec = record_for(cell, preset, threads, status="error", error=error)
            entries.append(benchmark_entry(rec))
    return entries


def document(benchmarks: list[dict[str, Any]], machine_info: dict[str, Any]) -> dict[str, Any]:
    """A whole pytest-benchmark JSON document around `benchmarks`."""
    from pytest_benchmark import __version__
    from pytest_benchmark.utils import get_commit_info

    return {
        "machine_info": machine_info,
        "commit_info": get_commit_info(),
        "benchmarks": benchmarks,
        "datetime": _dt.datetime.now(_dt.UTC).isoformat(),
        "version": __version__,
    }


def default_machine_info(nnparity: dict[str, Any]) -> dict[str, Any]:
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    info = pytest_benchmark_generate_machine_info()
    info["nnparity"] = nnparity
    return info


def read_stream(path: Path) -> list[dict[str, Any]]:
    """Benchmark entries a worker streamed, one JSON object a line; a torn last line
    (the worker was killed mid-write) is dropped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def append_stream(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, default=_jsonable) + "\n")
        fh.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return str(value)


def write_group_file(path: Path, doc: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(doc, indent=1, default=_jsonable) + "\n")


def finish_group(group: Group, preset: str, out: Path, pytest_json: Path, stream: Path,
                 machine_info: dict[str, Any], error: str, threads: int | None) -> dict[str, Any]:
    """Write the group's final file (one worker process) and return its document."""
    doc = group_document(group, preset, pytest_json, stream, machine_info, error, threads)
    write_group_file(out, doc)
    return doc


def group_document(group: Group, preset: str, pytest_json: Path, stream: Path,
                   machine_info: dict[str, Any], error: str,
                   threads: int | None) -> dict[str, Any]:
    """One worker process's document for `group`.

    Base: pytest-benchmark's own JSON when the worker got that far, else the
    streamed entries. Streamed entries the base lacks (error cells the test
    recorded itself) are added, then error entries for cells never reached."""
    doc = None
    if pytest_json.exists():
        try:
            doc = json.loads(pytest_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            doc = None
    streamed = read_stream(stream)
    if doc is None:
        doc = document([], machine_info)
    have = {b.get("extra_info", {}).get("cell") for b in doc["benchmarks"]}
    for entry in streamed:
        cid = entry.get("extra_info", {}).get("cell")
        if cid not in have:
            doc["benchmarks"].append(entry)
            have.add(cid)
    doc["benchmarks"].extend(error_entries(group, preset, error or "cell did not run",
                                           {c for c in have if c}, threads))
    return doc


def _record_interval(bench: dict[str, Any]) -> None:
    """The cell's interval and stability verdict, in its extra_info (derived from the
    raw samples by the one function that computes them; readers may recompute)."""
    from bench.results.stats import cell_interval, seed_for

    info = bench["extra_info"]
    ci = cell_interval(bench["stats"]["data"], info.get("round_sizes") or (),
                       seed=seed_for(info.get("cell", "")))
    info["median_ci"] = [ci.low, ci.high]
    info["unstable"] = ci.unstable


def merge_rounds(docs: list[dict[str, Any]], orders: list[list[str]],
                 run_block: dict[str, Any] | None = None,
                 intervals: bool = True) -> dict[str, Any]:
    """One group document from the documents of its rounds (worker processes), in
    round order; `orders[r]` is the cell ids in the order round r timed them.

    A cell ok in every round it ran in gets their samples one round after another
    (`stats.data`), `round_sizes` (samples per round), `round_positions` (its place
    in each round's order) and the stats block of the pooled samples; its other
    fields come from its first round (the one that checked agreement), except
    `retraces` (summed), `peak_memory_bytes` (the highest) and `warmup_settled`
    (every round settled). A cell that errored in any round is an error entry
    saying which round: a cell that fails now and then has failed. With
    `intervals`, each timed cell also records its interval (`median_ci`, `unstable`)."""
    base = dict(docs[0])
    entries: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for r, doc in enumerate(docs):
        for bench in doc.get("benchmarks", []):
            cid = (bench.get("extra_info") or {}).get("cell")
            entries.setdefault(cid, []).append((r, bench))
    merged = []
    for cid, found in entries.items():
        bad = [(r, b) for r, b in found if (b.get("extra_info") or {}).get("status") != "ok"]
        if bad:
            r, bench = bad[0]
            bench = dict(bench)
            info = dict(bench.get("extra_info") or {})
            if len(docs) > 1:
                info["error"] = f"round {r + 1} of {len(docs)}: {info.get('error', '')}"
            bench["extra_info"] = info
            bench["stats"] = stats_block([])
            merged.append(bench)
            continue
        if len(found) == 1 and len(docs) == 1:
            bench = dict(found[0][1])
            bench["extra_info"] = dict(bench.get("extra_info") or {})
            if intervals and bench["extra_info"].get("phase") != CALIBRATION and (
                    bench.get("stats") or {}).get("data"):
                _record_interval(bench)
            merged.append(bench)
            continue
        first = dict(found[0][1])
        info = dict(first.get("extra_info") or {})
        data = [float(v) for _, b in found for v in (b.get("stats") or {}).get("data", [])]
        infos = [b.get("extra_info") or {} for _, b in found]
        if info.get("phase") != CALIBRATION:
            info["round_sizes"] = [len((b.get("stats") or {}).get("data", [])) for _, b in found]
            info["round_positions"] = [orders[r].index(cid) if cid in orders[r] else 0
                                       for r, _ in found]
            retraces = [i.get("retraces") for i in infos if i.get("retraces") is not None]
            info["retraces"] = sum(retraces) if retraces else None
            peaks = [i.get("peak_memory_bytes") for i in infos
                     if i.get("peak_memory_bytes") is not None]
            info["peak_memory_bytes"] = max(peaks) if peaks else None
            settled = [i.get("warmup_settled") for i in infos]
            info["warmup_settled"] = None if None in settled else all(settled)
            stats = stats_block(data)
            if info.get("flops") and stats["median"] > 0:
                info["flops_per_s"] = info["flops"] / stats["median"]
        first["extra_info"] = info
        first["stats"] = stats_block(data)
        if intervals and info.get("phase") != CALIBRATION and data:
            _record_interval(first)
        merged.append(first)
    base["benchmarks"] = merged
    if run_block is not None:
        base["nnparity_run"] = run_block
    return base


def write_text_atomic(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Write a file via a temp file in the same directory + rename: readers see the
    old file or the new one, never half of one. A link at `path` is replaced, never
    written through. A path that cannot be written (a directory, a read-only or full
    disk, /proc) raises `OutputError` naming it, and leaves no temporary file."""
    data = text.encode("utf-8") if isinstance(text, str) else text

    def dump(fh: IO[bytes]) -> None:
        fh.write(data)

    write_atomic(path, dump)


def safe_name(text: str) -> str:
    """The one sanitiser of file names built from results (task names, cell groups):
    only letters, digits, "_", "=" and "-" survive, so no "/", "..", NUL or control
    character from a results file can steer a write. Every figure writer uses it."""
    return re.sub(r"[^A-Za-z0-9_=-]+", "_", str(text)).strip("_")[:120] or "unnamed"


def write_atomic(path: str | os.PathLike[str], dump: Callable[[IO[bytes]], None],
                 root: str | os.PathLike[str] | None = None) -> None:
    """`dump(fh)` into a temp file beside `path`, then rename it over `path` (see
    `write_text_atomic`); figures use it with `savefig`. With `root`, a path whose
    directory does not resolve inside `root` (a traversal name, a planted directory
    link) is refused, and no directory outside `root` is ever created."""
    try:
        target = Path(path)
        if root is not None:
            base = Path(root).resolve()
            parent = target.parent.resolve()
            if parent != base and base not in parent.parents:
                raise OutputError(f"refusing to write {target}: it is outside {root}")
        if target.is_dir():
            raise OutputError(f"cannot write {target}: it is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # an embedded NUL byte
        raise OutputError(f"cannot write {path!r}: {exc}") from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            dump(fh)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path: str | os.PathLike[str], timeout: float = 300.0) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of the shared file `path` (the
    history CSV, a machine's baseline): `flock` on the sibling `.<name>.lock`, waited
    for up to `timeout` seconds and released by the kernel however the process ends.
    Concurrent writers then take turns instead of each overwriting the others' rows."""
    target = Path(path)
    lock = target.parent / f".{target.name}.lock"
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise OutputError(f"cannot write {path!r}: {exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OutputError(f"cannot write {target}: another writer has held "
                                      f"{lock} for over {timeout:.0f} s") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def check_output_file(path: str | os.PathLike[str]) -> None:
    """Fail early, before any work, when `path` can clearly not be written: it is a
    directory, or its nearest existing parent is not a writable directory."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: {parent} is not writable")
