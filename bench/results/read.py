"""Load raw benchmark runs: the one reader of the harness's results format.

A run is a directory of pytest-benchmark JSON files (or one such file, e.g. a
committed baseline) whose benchmarks carry our `extra_info` (cell id,
dimensions, status, calibration `gflops`) and whose `machine_info["nnparity"]`
identifies the machine. `load_run` returns one row per cell with the raw
samples kept; `merge_runs` pools repeated runs of the same code.

This module must not judge, print or run anything; bad input is a `LoadError`
whose message is one line naming the file.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.options import InputError
from bench.results.schema import stats_block
from bench.results.validate import MAX_FILE_BYTES, parse_int, problems


class LoadError(InputError):
    """A results file is missing, unreadable, truncated or not in the raw format."""


@dataclass(frozen=True)
class RunInfo:
    """Where a run came from: enough to tell whether two runs are comparable."""

    path: str
    fingerprint: str
    cpu: str = ""
    gpu: str = ""
    commit: str = ""
    date: str = ""


def _other_format(doc: Any) -> bool:
    """A JSON that is recognisably not a results file and may sit beside them in a run
    directory: an object with neither `benchmarks` nor `machine_info` (a summary), or
    github-action-benchmark's list of {name, value} entries. Anything else in a run
    directory claims to be results and is validated as such."""
    if isinstance(doc, dict):
        return "benchmarks" not in doc and "machine_info" not in doc
    return isinstance(doc, list) and bool(doc) and all(
        isinstance(e, dict) and "name" in e and "value" in e for e in doc)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


def read_document(file: Path) -> Any:
    """The one parser of results files: the JSON document in `file`, read once.

    Refused with a one-line `LoadError` naming the file: not a regular file, larger
    than `MAX_FILE_BYTES` (before anything is read), not UTF-8, not JSON, nested too
    deeply, or an object with a duplicate key. Integer literals too long to be a field
    (Python's own limit is a traceback) become `BigInt`, which `problems` names."""
    file = Path(file)
    try:
        if not file.is_file():  # a FIFO or device named *.json would block or never end
            raise LoadError(f"{file}: not a regular file")
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LoadError(f"{file}: {size / 2**20:.0f} MiB; a results file is at most "
                            f"{MAX_FILE_BYTES // 2**20} MiB (docs/results-format.md, Limits)")
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadError(f"{file}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise LoadError(f"{file}: not UTF-8 text (corrupt?)") from None
    try:
        return json.loads(text, parse_int=parse_int, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise LoadError(
            f"{file}: invalid JSON at line {exc.lineno} column {exc.colno} "
            f"({exc.msg}); truncated or corrupt?"
        ) from None
    except RecursionError:
        raise LoadError(f"{file}: JSON nested too deeply; not a results file") from None
    except _DuplicateKey as exc:
        raise LoadError(f"{file}: key {str(exc.args[0])!r} appears twice in one object; "
                        "which one counts is ambiguous") from None


#: validated documents by (path, inode, size, mtime): a command that looks at a run
#: twice (which machines, then the cells) parses each file once; a few runs' worth
_PARSED: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_PARSED_MAX = 64
_OTHER = object()


def _read_json(file: Path, strict: bool = True) -> dict[str, Any] | None:
    """The parsed and validated results document; None for a JSON of another format
    (`_other_format`, e.g. a summary beside the results) unless `strict`."""
    try:
        st = file.stat()
        key: tuple[Any, ...] | None = (str(file.resolve()), st.st_ino, st.st_size,
                                       st.st_mtime_ns)
    except (OSError, ValueError):
        key = None  # read_document says what is wrong
    if key is not None and key in _PARSED:
        _PARSED.move_to_end(key)
        doc = _PARSED[key]
        if doc is not _OTHER or not strict:
            return None if doc is _OTHER else doc
    doc = read_document(file)
    if _other_format(doc) and not strict:
        result: Any = _OTHER
    else:
        found = problems(doc, str(file))
        if found:
            more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
            raise LoadError(found[0] + more)
        result = doc
    if key is not None:
        _PARSED[key] = result
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return None if result is _OTHER else result


_ROW_COLUMNS = ("cell", "task", "preset", "backend", "variant", "device", "dtype", "batch_size",
                "phase", "status", "error", "gflops", "samples", "round_sizes", "source", "raw")
_DERIVED_COLUMNS = ("rounds", "median", "iqr", "q1", "q3", "min")


def _cell_row(bench: Any, file: Path) -> dict[str, Any]:
    if not isinstance(bench, dict):
        raise LoadError(f"{file}: a 'benchmarks' entry is not an object")
    extra = bench.get("extra_info") or {}
    stats = bench.get("stats") or {}
    cell = extra.get("cell") or bench.get("fullname") or bench.get("name")
    if not cell:
        raise LoadError(f"{file}: a benchmark has neither extra_info.cell nor a name")
    data = stats.get("data") if isinstance(stats, dict) else None
    try:
        samples = np.asarray(data if data is not None else [], dtype=float).ravel()
    except (TypeError, ValueError):
        raise LoadError(f"{file}: {cell}: stats.data is not a list of numbers") from None
    status = str(extra.get("status", "ok"))
    if status != "ok":
        samples = np.asarray([], dtype=float)
    # how many consecutive samples each worker process (round) took; a file written
    # before rounds, or sizes that do not add up, make all the samples one round
    sizes = extra.get("round_sizes")
    if not (isinstance(sizes, list) and sizes and all(isinstance(n, int) and n > 0
                                                      for n in sizes)
            and sum(sizes) == samples.size):
        sizes = [int(samples.size)] if samples.size else []
    return {
        "cell": str(cell),
        "task": extra.get("task", ""),
        "preset": extra.get("preset", ""),
        "backend": extra.get("backend", ""),
        "variant": extra.get("variant", ""),
        "device": extra.get("device", ""),
        "dtype": extra.get("dtype", ""),
        "batch_size": extra.get("batch_size"),
        "phase": extra.get("phase", ""),
        "status": status,
        "error": str(extra.get("error", "")),
        "gflops": extra.get("gflops"),
        "samples": samples,
        "round_sizes": list(sizes),
        "source": str(file),
        "raw": bench,
    }


def _run_info(path: Path, doc: dict[str, Any]) -> RunInfo:
    machine = doc.get("machine_info") or {}
    ours = machine.get("nnparity") or {}
    commit = ours.get("git_commit") or (doc.get("commit_info") or {}).get("id") or ""
    return RunInfo(
        path=str(path),
        fingerprint=str(ours.get("fingerprint") or "unknown"),
        cpu=str(ours.get("cpu") or (machine.get("cpu") or {}).get("brand_raw", "")),
        gpu=str(ours.get("gpu") or ""),
        commit=str(commit),
        date=str(ours.get("date") or doc.get("datetime") or ""),
    )



def merge_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: samples of repeated cells concatenated, in input order, and
    their rounds (worker processes) listed one after another in `round_sizes`."""
    if df.empty:
        return df.reindex(columns=[*_ROW_COLUMNS, *_DERIVED_COLUMNS])
    rows = []
    for _, group in df.groupby("cell", sort=True):
        row = group.iloc[0].to_dict()
        ok = group[group["status"] == "ok"]
        if not ok.empty:
            row = ok.iloc[0].to_dict()
            row["samples"] = np.concatenate(list(ok["samples"]))
            row["round_sizes"] = [n for x, sizes in zip(ok["samples"], ok.get(
                "round_sizes", [None] * len(ok)), strict=True)
                for n in (sizes if isinstance(sizes, list) and sum(sizes) == len(x)
                          else [len(x)] if len(x) else [])]
            # one median per round (worker process, or merged run): compare checks they agree
            row["round_medians"] = [float(np.median(x)) for x in
                                    np.split(row["samples"], np.cumsum(row["round_sizes"])[:-1])
                                    if len(x)]
            gflops = [g for g in ok["gflops"] if g is not None and not pd.isna(g)]
            row["gflops"] = float(np.mean(gflops)) if gflops else None
        rows.append(row)
    out = pd.DataFrame(rows)
    s = out["samples"]
    out["rounds"] = [len(x) for x in s]
    # pytest-benchmark's own statistics (the stats block of the raw file, for a cell
    # that ran once), so the report prints what `pytest-benchmark compare` shows
    blocks = [stats_block(x) for x in s]
    out["median"] = [b["median"] for b in blocks]
    out["iqr"] = [b["iqr"] for b in blocks]
    out["q1"] = [b["q1"] for b in blocks]
    out["q3"] = [b["q3"] for b in blocks]
    out["min"] = [float(np.min(x)) if len(x) else math.nan for x in s]
    out.attrs = df.attrs
    return out


def load_run(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a run directory (every *.json below it) or one results file.

    Returns one row per cell with its raw `samples` (seconds), `median`, `iqr`,
    `min`, `rounds`, the cell's dimensions and the original benchmark dict in
    `raw`; `df.attrs["run"]` is the run's `RunInfo`, `df.attrs["machine_info"]`
    and `df.attrs["commit_info"]` the pytest-benchmark blocks of its first file.
    """
    root = Path(path)
    if root.is_dir():
        # hidden entries (.work, temporary files) are the harness's own, never results
        files = sorted(f for f in root.rglob("*.json")
                       if not any(part.startswith(".") for part in f.relative_to(root).parts))
        if not files:
            raise LoadError(f"{root}: no *.json results files in this directory")
    elif root.exists():
        files = [root]
    else:
        raise LoadError(f"{root}: no such file or directory")
    rows: list[dict[str, Any]] = []
    docs = []
    loaded: list[Path] = []
    for file in files:
        doc = _read_json(file, strict=len(files) == 1)
        if doc is None:
            continue
        docs.append((_run_info(root, doc), doc))
        loaded.append(file)
        rows.extend(_cell_row(b, file) for b in doc["benchmarks"])
    if not docs:
        raise LoadError(f"{root}: none of its *.json files is a pytest-benchmark results file")
    # the first file that knows its machine speaks for the run
    known = [d for d in docs if d[0].fingerprint != "unknown"]
    info, doc = (known or docs)[0]
    df = pd.DataFrame(rows, columns=list(_ROW_COLUMNS))
    df.attrs["run"] = info
    df.attrs["machine_info"] = doc.get("machine_info") or {}
    df.attrs["commit_info"] = doc.get("commit_info") or {}
    # every file's commit: one modified tree (+dirty) marks the whole run
    df.attrs["commits"] = sorted({d[0].commit for d in docs if d[0].commit})
    # each group's machine state (runner: load average, other processes' CPU share)
    df.attrs["machine_load"] = {
        f.stem: d["nnparity_run"]["machine_load"] for f, (_, d) in zip(loaded, docs, strict=True)
        if isinstance(d.get("nnparity_run"), dict)
        and isinstance(d["nnparity_run"].get("machine_load"), dict)}
    # a tuned run (`run --settings`): backend -> setting, and where they came from
    tuned: dict[str, str] = {}
    for _, d in docs:
        block = d.get("nnparity_run") if isinstance(d.get("nnparity_run"), dict) else {}
        if isinstance(block.get("settings"), dict):
            tuned.update({str(k): str(v) for k, v in block["settings"].items()})
    if not tuned:  # files without the run block (a cluster executor): the cells' own record
        for raw in df["raw"]:
            extra = raw.get("extra_info") if isinstance(raw, dict) else None
            if isinstance(extra, dict) and extra.get("setting"):
                tuned[str(extra.get("backend", ""))] = str(extra["setting"])
        if tuned:
            tuned["source"] = "the cells' records"
    df.attrs["settings"] = tuned
    # each group's process records the threads of the framework it ran (impls.threads)
    threads: dict[str, Any] = {}
    for _, d in docs:
        ours = (d.get("machine_info") or {}).get("nnparity") or {}
        threads.update(ours.get("framework_threads") or {})
    df.attrs["framework_threads"] = threads
    return merge_cells(df)


def merge_runs(runs: list[pd.DataFrame]) -> pd.DataFrame:
    """Pool several runs of the same code (e.g. interleaved rounds) cell by cell."""
    df = pd.concat(runs, ignore_index=True)
    df.attrs = dict(runs[0].attrs)
    df.attrs["commits"] = sorted({c for r in runs for c in r.attrs.get("commits", [])})
    return merge_cells(df)


def main_batch(part: pd.DataFrame) -> Any:
    """The batch size every phase of a config was timed at (the sweep adds others for
    `step`): the one main-batch rule of every table, figure and check."""
    counts = part.groupby("batch_size")["phase"].nunique()
    return counts.idxmax() if not counts.empty else None


def main_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of `df` at each config's main batch size (`main_batch`)."""
    parts = [part[part["batch_size"] == main_batch(part)]
             for _, part in df.groupby("config", sort=False)]
    return pd.concat(parts) if parts else df.iloc[0:0]
