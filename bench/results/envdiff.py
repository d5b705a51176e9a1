"""What differs between the environments of runs: the lines a report or compare shows first.

`differences(blocks)` takes labelled `machine_info["nnparity"]` blocks (the
environment block, docs/results-format.md) and lists, one line per setting,
what is not the same across them: framework versions, CPU/GPU, driver, CUDA
and cuDNN, BLAS libraries and kernels, OPENBLAS_CORETYPE, thread settings and
precision settings. Settings a block does not record (an older format) are
not called different. `environment_differences(df)` does this for the files
a loaded run came from. This module writes, times and judges nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from bench.options import InputError
from bench.results.read import _read_json

_MISSING = object()


def _blas(block: dict[str, Any]) -> Any:
    libs = block.get("blas")
    if not isinstance(libs, list):
        return _MISSING
    names = sorted({" ".join(str(lib.get(k)) for k in ("internal_api", "version", "architecture")
                             if lib.get(k) is not None)
                    for lib in libs if isinstance(lib, dict) and lib.get("user_api") == "blas"})
    return ", ".join(names) or "none"


def settings(block: dict[str, Any]) -> dict[str, Any]:
    """The comparable settings of one environment block, flattened to labels."""
    out: dict[str, Any] = {}
    if not isinstance(block, dict):
        return out
    for name, version in sorted((block.get("frameworks") or {}).items()):
        out[name] = version
    for key, label in (("cpu", "CPU"), ("cores", "cores"), ("gpu", "GPU"), ("python", "Python"),
                       ("threads", "threads"), ("openblas_coretype", "OPENBLAS_CORETYPE")):
        if key in block:
            out[label] = block[key]
    for key, value in sorted((block.get("gpu_software") or {}).items()):
        out[key if key != "driver" else "GPU driver"] = value
    blas = _blas(block)
    if blas is not _MISSING:
        out["BLAS"] = blas
    for key, value in sorted(((block.get("thread_settings") or {}).get("env") or {}).items()):
        out[key] = value
    precision = block.get("precision_settings") or {}
    for key, value in sorted((precision.get("env") or {}).items()):
        out[key] = value
    for key, value in sorted(precision.items()):
        if key != "env":
            out[key] = value
    return out


#: settings that belong to one process, not to the environment: a group's BLAS and its
#: framework's precision switches differ between the groups of one run by design
PER_PROCESS = ("BLAS", "torch_", "jax_")


def _per_process(key: str) -> bool:
    return any(key == p or (p.endswith("_") and key.startswith(p)) for p in PER_PROCESS)


def differences(blocks: dict[str, dict[str, Any]], only: Any = None) -> list[str]:
    """One line per setting that differs, e.g. "numpy: 2.3.5 (base) vs 2.4.6 (head)";
    `only(key)` limits the settings compared."""
    if len(blocks) < 2:
        return []
    flat = {label: settings(b) for label, b in blocks.items()}
    keys = sorted({k for s in flat.values() for k in s if only is None or only(k)})
    lines = []
    for key in keys:
        values: dict[str, list[str]] = {}
        for label, s in flat.items():
            if key in s:
                values.setdefault(str(s[key]) if s[key] != "" else "unset", []).append(label)
        if len(values) > 1:
            lines.append(f"{key}: " + " vs ".join(
                f"{v} ({', '.join(labels)})" for v, labels in values.items()))
    return lines


def environment_differences(df: pd.DataFrame) -> list[str]:
    """Differences between the environment blocks of the files `df` was loaded from:
    environment-wide settings across all files, per-process ones (BLAS, a framework's
    precision switches) only between files of the same group (e.g. two rounds)."""
    blocks: dict[str, dict[str, Any]] = {}
    sources = sorted({str(s) for s in df.get("source", pd.Series(dtype=str)).dropna()})
    root = Path(os.path.commonpath(sources)) if sources else Path()
    for source in sources:
        try:  # the one reader (each file was parsed and validated once, when loaded)
            doc = _read_json(Path(source), strict=False) or {}
            block = doc["machine_info"]["nnparity"]
        except (InputError, KeyError, TypeError):
            continue
        if isinstance(block, dict):
            label = str(Path(source).relative_to(root)) if len(sources) > 1 else source
            blocks[label] = block
    lines = differences(blocks, only=lambda k: not _per_process(k))
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for label, block in blocks.items():
        groups.setdefault(Path(label).name, {})[label] = block
    for same in groups.values():
        lines += differences(same, only=_per_process)
    return lines
