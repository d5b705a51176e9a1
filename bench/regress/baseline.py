"""Committed per-machine baselines and the github-action-benchmark export: the library
of `nnparity baseline` (bench/commands/baseline.py).

`update_baseline` merges a run's cells into `results/baselines/<fingerprint>.json`
(a pytest-benchmark-compatible JSON with raw samples, so `pytest-benchmark
compare` and `nnparity compare` both read it); `find_baseline` finds the
baseline of a run's own machine and `baseline_age` says which commit and date it
holds; `write_github_benchmark` writes the `customSmallerIsBetter` JSON that
github-action-benchmark reads.

This module must not run benchmarks; every file it writes is written
atomically, and nothing is written when an input cannot be read.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.paths import BASELINES
from bench.results.read import RunInfo, load_run
from bench.results.schema import stats_block
from bench.results.write import file_lock, write_text_atomic


def baseline_path(fingerprint: str, root: Path = BASELINES) -> Path:
    """The committed baseline file of one machine."""
    return Path(root) / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', fingerprint)}.json"


def find_baseline(run: pd.DataFrame, root: Path = BASELINES) -> Path | None:
    """The baseline matching the run's machine fingerprint, if one is committed."""
    info: RunInfo = run.attrs["run"]
    path = baseline_path(info.fingerprint, root)
    return path if info.fingerprint != "unknown" and path.is_file() else None


def benchmark_document(run: pd.DataFrame) -> dict[str, Any]:
    """A pytest-benchmark JSON document holding every ok cell of `run`."""
    info: RunInfo = run.attrs["run"]
    benches = []
    for row in run.itertuples():
        if row.status != "ok" or not len(row.samples):
            continue
        bench = dict(row.raw)
        bench["stats"] = stats_block(row.samples)
        benches.append(bench)
    machine = dict(run.attrs.get("machine_info") or {})
    machine.setdefault("nnparity", {"fingerprint": info.fingerprint, "cpu": info.cpu,
                                    "gpu": info.gpu, "git_commit": info.commit,
                                    "date": info.date})
    return {"machine_info": machine, "commit_info": run.attrs.get("commit_info") or {},
            "datetime": info.date, "version": "nnparity-baseline", "benchmarks": benches}


def update_baseline(run: pd.DataFrame, root: Path = BASELINES) -> tuple[Path, int, int]:
    """Merge `run` into its machine's baseline; returns (path, cells updated, cells kept).

    Cells in the run replace the baseline's; cells the run lacks or where it
    errored keep their old baseline entry.
    """
    info: RunInfo = run.attrs["run"]
    path = baseline_path(info.fingerprint, root)
    ok = run[(run["status"] == "ok") & (run["rounds"] > 0)]
    kept = pd.DataFrame()
    with file_lock(path):  # concurrent updates take turns: none loses another's cells
        if path.is_file():
            old = load_run(path)  # a corrupt baseline raises before anything is written
            kept = old[~old["cell"].isin(set(ok["cell"])) & (old["status"] == "ok")]
        merged = pd.concat([kept, ok], ignore_index=True) if len(kept) else ok.copy()
        merged.attrs = dict(run.attrs)
        doc = benchmark_document(merged.sort_values("cell"))
        doc["nnparity_baseline"] = {
            "fingerprint": info.fingerprint, "source": info.path, "commit": info.commit,
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        write_text_atomic(path, json.dumps(doc, indent=1) + "\n")
    return path, len(ok), len(kept)


def write_github_benchmark(run: pd.DataFrame, path: str | Path) -> int:
    """Write github-action-benchmark's `customSmallerIsBetter` JSON; returns the entry count.

    One entry per ok cell: the median in milliseconds, "± IQR" as the range,
    and the dimensions and round count in `extra`.
    """
    info: RunInfo = run.attrs["run"]
    entries = []
    for row in run.sort_values("cell").itertuples():
        if row.status != "ok" or not row.rounds:
            continue
        extra = (f"{row.backend}/{row.variant} on {row.device} {row.dtype}, phase {row.phase}; "
                 f"{row.rounds} rounds, min {row.min * 1e3:.4g} ms; machine {info.fingerprint}"
                 + (f"; commit {info.commit[:10]}" if info.commit else ""))
        entries.append({"name": row.cell, "unit": "ms", "value": round(row.median * 1e3, 6),
                        "range": f"± {row.iqr * 1e3:.4g}", "extra": extra})
    write_text_atomic(path, json.dumps(entries, indent=1) + "\n")
    return len(entries)


def baseline_age(path: Path, now: dt.datetime | None = None) -> str:
    """One line: which commit and date a committed baseline holds, and how old it is."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return f"baseline {path}: its commit and date cannot be read"
    meta = doc.get("nnparity_baseline") if isinstance(doc, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    ours = ((doc.get("machine_info") or {}).get("nnparity") or {}) if isinstance(doc,
                                                                                  dict) else {}
    commit = str(meta.get("commit") or ours.get("git_commit") or "?")
    when = str(meta.get("updated") or ours.get("date") or "")
    age = ""
    try:
        stamp = dt.datetime.fromisoformat(when)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        days = ((now or dt.datetime.now(dt.UTC)) - stamp).total_seconds() / 86400
        age = f", {days:.0f} days old" if days >= 1 else f", {days * 24:.0f} hours old"
    except ValueError:
        pass
    dirty = " (recorded from a modified tree: +dirty)" if commit.endswith("+dirty") else ""
    return (f"baseline holds commit {commit[:10]}{dirty}, recorded {when or 'at an unknown date'}"
            f"{age}; verdicts use the same rule as `nnparity compare`")
