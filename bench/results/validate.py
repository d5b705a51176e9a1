"""Check a parsed results document against the one results format, before anything uses it.

`problems(doc, file)` lists every way a pytest-benchmark JSON document departs
from what the harness writes (`bench.results.write`, `bench.results.schema.CellRecord`):
one line per problem, naming the file and the field, e.g.
"run/torch_mlp.json: benchmarks[3].stats.data[7]: -0.01 is not a positive time".
`bench.results.read` calls it once per file at load and refuses the file on the
first problem, so no reader, report or gate ever sees a wrong-typed field, a NaN,
a zero or negative time. The future `nnparity validate RUN_DIR` lists them all.

Foreign pytest-benchmark files (no `extra_info`) are accepted as long as what they
hold has the right types. This module reads no file, prints nothing and imports no
framework; it must stay in step with `CellRecord` (its fields are checked by their
declared types, so a new field is validated without a change here).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from bench.results.schema import CALIBRATION, STAT_FIELDS, CellRecord, parse_cell_id

#: nesting deeper than this is not something the harness writes (it writes at most 5)
MAX_DEPTH = 32
_RECORD_TYPES = typing.get_type_hints(CellRecord)
#: `extra_info.gradcheck` fields written by `bench.agreement.check.check_cell`
_GRADCHECK_TYPES: dict[str, tuple[type, ...]] = {
    "passed": (bool, type(None)), "max_rel_err": (int, float, type(None)),
    "tolerance": (int, float, type(None)), "error": (str, type(None)),
}
#: machine_info["nnparity"] fields written by `bench.timing.environment.nnparity_info`
_NNPARITY_TYPES: dict[str, tuple[type, ...]] = {
    "fingerprint": (str,), "cpu": (str,), "gpu": (str,), "git_commit": (str,), "date": (str,),
    "python": (str,), "cores": (int,), "threads": (int,), "frameworks": (dict,),
}


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON value, counted without recursion (stops past `limit`)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children)
    return deepest


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "an integer", float: "a number"}.get(type(value),
                                                                        type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _allowed(hint: Any) -> tuple[type, ...]:
    """The JSON types a `CellRecord` field's type hint admits."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union,
                                                                types.UnionType) else (hint,)
    out: list[type] = []
    for arg in args:
        origin = typing.get_origin(arg) or arg
        out.extend((int, float) if origin is float else (origin,))
    return tuple(out)


def _check_value(value: Any, allowed: tuple[type, ...], where: str, out: list[str]) -> None:
    if isinstance(value, bool) and bool not in allowed:
        out.append(f"{where}: {value!r} is {_type_name(value)}, not a number")
    elif not isinstance(value, allowed):
        names = " or ".join(dict.fromkeys(_type_name(t()) if t is not type(None) else "null"
                                          for t in allowed))
        out.append(f"{where}: {_short(value)} is {_type_name(value)}, expected {names}")
    elif isinstance(value, float) and not math.isfinite(value):
        out.append(f"{where}: {value!r} is not a finite number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_record(extra: dict[str, Any], where: str, out: list[str]) -> None:
    for name, value in extra.items():
        hint = _RECORD_TYPES.get(name)
        if hint is None:
            continue  # a field of a newer or foreign writer: kept, not interpreted
        before = len(out)
        _check_value(value, _allowed(hint), f"{where}.{name}", out)
        if len(out) > before:
            continue
        if name in ("batch_size", "threads", "gemm_size") and value is not None and value <= 0:
            out.append(f"{where}.{name}: {value!r} must be positive")
        if name in ("flops", "peak_memory_bytes", "retraces", "warmup_calls") \
                and value is not None and value < 0:
            out.append(f"{where}.{name}: {value!r} must not be negative")
        if name in ("gflops", "flops_per_s") and value is not None and value <= 0:
            out.append(f"{where}.{name}: {value!r} must be positive")
        if name == "build_s" and value is not None and value < 0:
            out.append(f"{where}.{name}: {value!r} must not be negative")
    if isinstance(extra.get("knobs"), dict):
        for key, value in extra["knobs"].items():
            if not isinstance(value, str):
                out.append(f"{where}.knobs.{key}: {_short(value)} is {_type_name(value)}, "
                           "expected a string")
    if isinstance(extra.get("gradcheck"), dict):
        for key, allowed in _GRADCHECK_TYPES.items():
            if key in extra["gradcheck"]:
                _check_value(extra["gradcheck"][key], allowed, f"{where}.gradcheck.{key}", out)
    cell = extra.get("cell")
    if isinstance(cell, str):
        try:
            parsed = parse_cell_id(cell)
        except ValueError as exc:
            out.append(f"{where}.cell: {exc}")
        else:
            phase = extra.get("phase")
            if isinstance(phase, str) and phase != parsed.phase:
                out.append(f"{where}.phase: {phase!r} differs from the cell id's {parsed.phase!r}")
    elif "cell" not in extra and extra:
        out.append(f"{where}.cell: missing")
    if extra.get("status") == "ok" and extra.get("phase") == CALIBRATION \
            and "gflops" in extra and extra["gflops"] is None:
        out.append(f"{where}.gflops: missing in an ok calibration cell")


def _check_stats(stats: Any, where: str, out: list[str]) -> None:
    if not isinstance(stats, dict):
        out.append(f"{where}: {_short(stats)} is {_type_name(stats)}, expected an object")
        return
    for name in STAT_FIELDS:
        # NaN is how an error cell (no samples) writes its statistics
        if name in stats and not (_is_number(stats[name]) or stats[name] is None):
            out.append(f"{where}.{name}: {_short(stats[name])} is {_type_name(stats[name])}, "
                       "expected a number")
    # no samples (missing or empty data) reads as a cell that could not be measured
    if "data" not in stats:
        return
    data = stats["data"]
    if not isinstance(data, list):
        out.append(f"{where}.data: {_short(data)} is {_type_name(data)}, expected a list")
        return
    for i, value in enumerate(data):
        if not _is_number(value):
            out.append(f"{where}.data[{i}]: {_short(value)} is {_type_name(value)}, "
                       "expected a time in seconds")
        elif not math.isfinite(value):
            out.append(f"{where}.data[{i}]: {value!r} is not a finite time")
        elif value <= 0:
            out.append(f"{where}.data[{i}]: {value!r} is not a positive time")


def _check_benchmark(bench: Any, where: str, out: list[str]) -> None:
    if not isinstance(bench, dict):
        out.append(f"{where}: {_short(bench)} is {_type_name(bench)}, expected an object")
        return
    for name in ("name", "fullname"):
        if name in bench and not isinstance(bench[name], str):
            out.append(f"{where}.{name}: {_short(bench[name])} is {_type_name(bench[name])}, "
                       "expected a string")
    extra = bench.get("extra_info", {})
    if not isinstance(extra, dict):
        out.append(f"{where}.extra_info: {_short(extra)} is {_type_name(extra)}, "
                   "expected an object")
        extra = {}
    else:
        _check_record(extra, f"{where}.extra_info", out)
    if not extra.get("cell") and not isinstance(bench.get("fullname") or bench.get("name"), str):
        out.append(f"{where}: neither extra_info.cell nor a name")
    if "stats" not in bench:
        out.append(f"{where}.stats: missing")
    else:
        _check_stats(bench["stats"], f"{where}.stats", out)


def problems(doc: Any, file: str | Path) -> list[str]:
    """Every problem of one parsed results document, one line each naming `file` and
    the field; an empty list for a valid document."""
    out: list[str] = []
    if _depth(doc) > MAX_DEPTH:
        return [f"{file}: nested more than {MAX_DEPTH} levels deep; not a results file"]
    if not isinstance(doc, dict):
        return [f"{file}: the document is {_type_name(doc)}, expected an object with a "
                "'benchmarks' list (a pytest-benchmark JSON)"]
    benches = doc.get("benchmarks")
    if not isinstance(benches, list):
        what = "missing" if "benchmarks" not in doc else \
            f"{_short(benches)} is {_type_name(benches)}, expected a list"
        out.append(f"{file}: benchmarks: {what}")
        benches = []
    for name in ("machine_info", "commit_info"):
        if name in doc and not isinstance(doc[name], dict):
            out.append(f"{file}: {name}: {_short(doc[name])} is {_type_name(doc[name])}, "
                       "expected an object")
    machine = doc.get("machine_info")
    if isinstance(machine, dict):
        ours = machine.get("nnparity")
        if ours is not None and not isinstance(ours, dict):
            out.append(f"{file}: machine_info.nnparity: {_short(ours)} is {_type_name(ours)}, "
                       "expected an object")
        elif isinstance(ours, dict):
            for key, allowed in _NNPARITY_TYPES.items():
                if key in ours:
                    _check_value(ours[key], allowed, f"{file}: machine_info.nnparity.{key}", out)
        cpu = machine.get("cpu")
        if cpu is not None and not isinstance(cpu, dict):
            out.append(f"{file}: machine_info.cpu: {_short(cpu)} is {_type_name(cpu)}, "
                       "expected an object")
    commit = doc.get("commit_info")
    if isinstance(commit, dict) and "id" in commit and not isinstance(commit["id"], (str,
                                                                                     type(None))):
        out.append(f"{file}: commit_info.id: {_short(commit['id'])} is "
                   f"{_type_name(commit['id'])}, expected a string")
    if "datetime" in doc and not isinstance(doc["datetime"], (str, type(None))):
        out.append(f"{file}: datetime: {_short(doc['datetime'])} is "
                   f"{_type_name(doc['datetime'])}, expected a string")
    cells: dict[str, int] = {}
    for i, bench in enumerate(benches):
        _check_benchmark(bench, f"{file}: benchmarks[{i}]", out)
        cell = bench.get("extra_info", {}).get("cell") if isinstance(bench, dict) and \
            isinstance(bench.get("extra_info"), dict) else None
        if isinstance(cell, str):
            if cell in cells:
                out.append(f"{file}: benchmarks[{i}].extra_info.cell: {cell!r} repeats "
                           f"benchmarks[{cells[cell]}]")
            cells.setdefault(cell, i)
    return out


def field_names() -> tuple[str, ...]:
    """The `extra_info` fields checked by type (every `CellRecord` field)."""
    return tuple(f.name for f in dataclasses.fields(CellRecord))
