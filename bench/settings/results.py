"""settings.json: a sweep's results, written atomically and read back as untrusted input.

The document (`bench.settings.sweep.run_sweep` builds it) holds the preset, rounds,
budget, seed, the machine block, every environment and declared setting, the recorded
round orders, and one entry per (cell, setting) item: its raw samples with their
round sizes, errors, and the agreement check's summary. `load` refuses, with one
line (`InputError`, exit 2), anything a reader could trip on: not the format, a
field of the wrong type, a non-finite or negative sample, too many of anything.
Text fields are kept as text; every sink escapes them (`bench.results.escape`).
This module imports no framework.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.options import InputError
from bench.results.read import read_document
from bench.results.write import write_text_atomic
from bench.settings.sweep import FORMAT, FORMAT_VERSION

FILE = "settings.json"
MAX_ITEMS = 10_000
MAX_SAMPLES = 100_000
MAX_TEXT = 2_000
_VERDICT_KEYS = ("passed", "verdict", "max_rel_err", "tolerance", "worst_tensor", "error",
                 "kink_flips", "aligned_rel_err")


def write(out: Path, doc: dict[str, Any]) -> Path:
    path = Path(out) / FILE
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def _fail(where: str, what: str) -> InputError:
    return InputError(f"{FILE}: {where} {what}")


def _text(value: Any, where: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(where, f"must be a string of at most {limit} characters")
    return value


def _number(value: Any, where: str, *, optional: bool = False, positive: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or (positive and value <= 0):
        raise _fail(where, f"must be a finite{' positive' if positive else ''} number, "
                           f"got {str(value)[:40]!r}")
    return float(value)


def _count(value: Any, where: str, limit: int = MAX_SAMPLES) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _fail(where, f"must be an integer from 0 to {limit}")
    return value


def _list(value: Any, where: str, limit: int) -> list:
    if not isinstance(value, list) or len(value) > limit:
        raise _fail(where, f"must be a list of at most {limit} entries")
    return value


def _dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, "must be an object")
    return value


def _gradcheck(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    raw = _dict(value, where)
    out: dict[str, Any] = {}
    passed = raw.get("passed")
    if passed not in (True, False, None):
        raise _fail(f"{where}.passed", "must be true, false or null")
    out["passed"] = passed
    for key in ("verdict", "worst_tensor", "error"):
        if raw.get(key) is not None:
            out[key] = _text(raw[key], f"{where}.{key}", 500)
    for key in ("max_rel_err", "tolerance", "aligned_rel_err"):
        out[key] = _number(raw.get(key), f"{where}.{key}", optional=True)
    if raw.get("kink_flips") is not None:
        out["kink_flips"] = _count(raw["kink_flips"], f"{where}.kink_flips", 2**40)
    return out


def _item(raw: Any, where: str) -> dict[str, Any]:
    raw = _dict(raw, where)
    item = {k: _text(raw.get(k), f"{where}.{k}", 600)
            for k in ("id", "cell", "backend", "task", "phase", "device", "setting",
                      "environment")}
    samples = _list(raw.get("samples"), f"{where}.samples", MAX_SAMPLES)
    item["samples"] = [_number(s, f"{where}.samples[{i}]", positive=True)
                       for i, s in enumerate(samples)]
    sizes = _list(raw.get("round_sizes"), f"{where}.round_sizes", 1000)
    item["round_sizes"] = [_count(n, f"{where}.round_sizes[{i}]") for i, n in enumerate(sizes)]
    if sum(item["round_sizes"]) != len(item["samples"]):
        raise _fail(f"{where}.round_sizes", "must add up to the number of samples")
    errors = _list(raw.get("errors", []), f"{where}.errors", 1000)
    item["errors"] = [_text(e, f"{where}.errors[{i}]") for i, e in enumerate(errors)]
    item["gradcheck"] = _gradcheck(raw.get("gradcheck"), f"{where}.gradcheck")
    if raw.get("blas") is not None:
        item["blas"] = _text(raw["blas"], f"{where}.blas", 200)
    return item


def validate(doc: Any) -> dict[str, Any]:
    """The parts of a settings document a reader uses, checked; InputError otherwise."""
    doc = _dict(doc, "the document")
    if doc.get("format") != FORMAT:
        raise _fail("format", f"must be {FORMAT!r}: not a settings sweep's results")
    if doc.get("format_version") != FORMAT_VERSION:
        raise _fail("format_version", f"must be {FORMAT_VERSION}")
    out: dict[str, Any] = {
        "preset": _text(doc.get("preset"), "preset", 40),
        "rounds": _count(doc.get("rounds"), "rounds", 1000),
        "budget_s": _number(doc.get("budget_s"), "budget_s", positive=True),
        "elapsed_s": _number(doc.get("elapsed_s"), "elapsed_s"),
        "seed": _count(doc.get("seed"), "seed", 2**63 - 1),
        "stopped": _text(doc.get("stopped", ""), "stopped", 400),
    }
    procs = _list(doc.get("processes", []), "processes", MAX_ITEMS)
    out["cpu_s"] = sum(_number(_dict(p, f"processes[{i}]").get("cpu_s", 0.0),
                               f"processes[{i}].cpu_s") for i, p in enumerate(procs))
    items = _list(doc.get("items"), "items", MAX_ITEMS)
    out["items"] = [_item(it, f"items[{i}]") for i, it in enumerate(items)]
    settings = _dict(doc.get("settings", {}), "settings")
    if len(settings) > MAX_ITEMS:
        raise _fail("settings", f"must hold at most {MAX_ITEMS} entries")
    out["settings"] = {}
    for key, raw in settings.items():
        raw = _dict(raw, f"settings[{_text(key, 'settings key', 200)!r}]")
        out["settings"][key] = {k: _text(raw.get(k, ""), f"settings[{key!r}].{k}", 500)
                                for k in ("backend", "name", "what", "scope")}
    na = _list(doc.get("not_applicable", []), "not_applicable", MAX_ITEMS * 10)
    out["not_applicable"] = [
        {k: _text(_dict(n, f"not_applicable[{i}]").get(k), f"not_applicable[{i}].{k}", 600)
         for k in ("cell_id", "backend", "setting", "why")} for i, n in enumerate(na)]
    machine = _dict(doc.get("machine", {}), "machine")
    out["machine"] = {k: _text(machine.get(k, ""), f"machine.{k}", 400)
                      for k in ("cpu", "gpu", "commit") if isinstance(machine.get(k, ""), str)}
    out["cores"] = _count(machine.get("cores", 0), "machine.cores", 1_000_000)
    return out


def load(out: Path) -> dict[str, Any]:
    """settings.json of a sweep directory (or the file itself), validated."""
    path = Path(out)
    if path.is_dir():
        path = path / FILE
    if not path.exists():
        raise InputError(f"{path}: no settings sweep results here (run nnparity settings)")
    return validate(read_document(path))
