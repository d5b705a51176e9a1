"""Runs from several machines as one table: machine becomes a dimension of every cell.

A run directory may hold groups measured on different machines (a Ray run), and
several run directories (CI shards, one run per machine) may be merged. Each
results file speaks for the machine that measured it (its `machine_info`
fingerprint), so files are read one at a time with `bench.results.read.load_run`
and every row gets a `machine` column (the fingerprint). Merging refuses, with
one line, what cannot be honestly mixed: runs of different commits, and the same
timed cell measured twice on the same machine. Calibration cells repeated on
one machine (every shard or Ray group calibrates its backend) are pooled: they
measure the machine, not the matrix.

This module reads only; it judges, prints and writes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.options import InputError
from bench.results.read import LoadError, _read_json, load_run, merge_cells, merge_runs
from bench.results.schema import CALIBRATION


@dataclass(frozen=True)
class Machine:
    """One machine of a merged run, as its results files describe it."""

    fingerprint: str
    cpu: str = ""
    cores: int | None = None
    gpu: str = ""
    threads: int | None = None

    @property
    def name(self) -> str:
        """Readable: CPU model and cores, and the GPU when there is one."""
        cores = f" ({self.cores} cores)" if self.cores else ""
        return f"{self.cpu or 'unknown CPU'}{cores}" + (f", {self.gpu}" if self.gpu else "")


def result_files(path: str | os.PathLike[str]) -> list[Path]:
    """The results files of a run directory (or the one file given)."""
    root = Path(path)
    if root.is_dir():
        files = [f for f in sorted(root.rglob("*.json"))
                 if ".work" not in f.parts and _read_json(f, strict=False) is not None]
        if not files:
            raise LoadError(f"{root}: no pytest-benchmark results files in this directory")
        return files
    if root.exists():
        return [root]
    raise LoadError(f"{root}: no such file or directory")


def fingerprints(path: str | os.PathLike[str]) -> set[str]:
    """The machines a run directory was measured on."""
    return {load_run(f).attrs["run"].fingerprint for f in result_files(path)}


def runs_by_machine(path: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """A run directory (or file) as one `load_run` table per machine that measured it,
    in order of appearance: each file speaks for its own machine, so a Ray run over
    two machines is two runs here, never one run labelled with the first file's machine."""
    files: dict[str, list[pd.DataFrame]] = {}
    for file in result_files(path):
        df = load_run(file)
        files.setdefault(df.attrs["run"].fingerprint, []).append(df)
    if len(files) == 1:  # one machine: the run as `load_run` reads it, unchanged
        return {fp: load_run(path) for fp in files}
    out = {}
    for fp, parts in files.items():
        run = merge_runs(parts) if len(parts) > 1 else parts[0]
        run.attrs = dict(parts[0].attrs, run=replace(parts[0].attrs["run"], path=str(path)))
        out[fp] = run
    return out


def _commit(machine_info: dict[str, Any], commit_info: dict[str, Any]) -> str:
    return str((machine_info.get("nnparity") or {}).get("git_commit")
               or commit_info.get("id") or "")


def load_machines(paths: list[str | os.PathLike[str]]) -> pd.DataFrame:
    """Every cell of every run, one row per (machine, cell), with `machine` and `run`
    columns. attrs: "machines" (fingerprint -> Machine, in order of appearance),
    "runs" (path -> commit), "ray_nodes" (fingerprint -> Ray node names).
    Raises InputError for runs of different commits or overlapping cells."""
    frames, machines, runs = [], {}, {}
    ray_nodes: dict[str, set[str]] = {}
    seen: dict[tuple[str, str], str] = {}
    for run in paths:
        commits = set()
        for file in result_files(run):
            df = load_run(file)
            info = df.attrs.get("machine_info") or {}
            ours = info.get("nnparity") or {}
            fp = df.attrs["run"].fingerprint
            machines.setdefault(fp, Machine(fp, str(ours.get("cpu", "")), ours.get("cores"),
                                            str(ours.get("gpu", "")), ours.get("threads")))
            node = ours.get("ray_node") or {}
            if node.get("name"):
                ray_nodes.setdefault(fp, set()).add(str(node["name"]))
            commits.add(_commit(info, df.attrs.get("commit_info") or {}))
            for cell, phase in zip(df["cell"], df["phase"], strict=True):
                if phase == CALIBRATION:
                    continue
                if (fp, cell) in seen:
                    raise InputError(f"cell {cell} was measured twice on machine {fp} "
                                     f"({seen[fp, cell]} and {file}); overlapping runs are "
                                     "not merged")
                seen[fp, cell] = str(file)
            frames.append(df.assign(machine=fp, run=str(run)))
        runs[str(run)] = ", ".join(sorted(c for c in commits if c)) or "unknown"
    known = {c for c in runs.values() if c != "unknown"}
    if len(known) > 1:
        listed = "; ".join(f"{p}: {c}" for p, c in runs.items())
        raise InputError(f"runs of different commits are not merged ({listed})")
    pooled = [merge_cells(part).assign(machine=fp)
              for fp, part in pd.concat(frames, ignore_index=True).groupby("machine", sort=False)]
    out = pd.concat(pooled, ignore_index=True)
    out.attrs = {"machines": machines, "runs": runs,
                 "ray_nodes": {k: sorted(v) for k, v in ray_nodes.items()}}
    return out


def split_machines(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows of each machine, in order of appearance."""
    return {fp: part for fp, part in df.groupby("machine", sort=False)}
