"""Flag real regressions and improvements between two runs (the library behind
`nnparity compare`, whose command is bench/commands/compare.py).

Runs are read by bench/results/read.py (`load_run`). `compare_runs` matches cells by
their canonical id and applies the rule in bench/results/stats.py; when the two runs
come from different machines each run's times are normalised by its own GEMM
calibration rate before the ratio. Reports: a table, Markdown or JSON.

This module must not run benchmarks, import a framework, or write anything
except the report file it is asked for (atomically). Bad input exits 2 with
one line naming the file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.results.envdiff import differences
from bench.results.escape import md_text
from bench.results.read import LoadError, RunInfo, load_run, merge_runs
from bench.results.schema import CALIBRATION
from bench.results.stats import (
    ALPHA,
    CONFIDENCE,
    FACTOR,
    NOISE_BAND,
    Verdict,
    compare_samples,
    seed_for,
    within_noise,
)
from bench.results.text import number
from bench.results.write import write_text_atomic

__all__ = ["Comparison", "LoadError", "compare_runs", "load_run", "merge_runs"]

#: order of verdicts in reports: what needs attention first
_VERDICT_ORDER = [v.value for v in Verdict]


def _calibration_rates(df: pd.DataFrame) -> dict[tuple[str, str], float]:
    """GEMM GFLOP/s by (backend, device), plus ("", device) and ("", "") fallbacks."""
    rates: dict[tuple[str, str], list[float]] = {}
    cal = df[(df["phase"] == CALIBRATION) & df["gflops"].notna()]
    for _, row in cal.iterrows():
        g = float(row["gflops"])
        for key in ((row["backend"], row["device"]), ("", row["device"]), ("", "")):
            rates.setdefault(key, []).append(g)
    return {k: float(np.mean(v)) for k, v in rates.items()}


def _rate_for(rates: dict[tuple[str, str], float], backend: str, device: str) -> float | None:
    for key in ((backend, device), ("", device), ("", "")):
        if key in rates:
            return rates[key]
    return None


@dataclass(frozen=True)
class Comparison:
    """The per-cell table of a comparison plus what a reader must know about it."""

    table: pd.DataFrame
    base: RunInfo
    current: RunInfo
    factor: float
    alpha: float
    confidence: float
    normalised: bool
    warnings: tuple[str, ...] = field(default=())
    #: rounds per side in which `continuous` re-timed the flagged cells (0: not re-timed)
    confirm_rounds: int = 0
    #: what differs between the two runs' environments (framework versions, BLAS, threads)
    environment: tuple[str, ...] = field(default=())
    #: a change counts only when its interval lies wholly outside +-noise
    noise: float = NOISE_BAND

    def count(self, verdict: Verdict) -> int:
        return int((self.table["verdict"] == verdict.value).sum())

    @property
    def regressed(self) -> bool:
        return self.count(Verdict.REGRESSION) > 0

    @property
    def lost(self) -> list[str]:
        """Cells the baseline timed that the current run lacks or has no samples for:
        a gate must not pass because the cells that would regress did not run."""
        t = self.table
        if t.empty:
            return []
        gone = (t["verdict"] == Verdict.MISSING.value) | (
            (t["verdict"] == Verdict.ERROR.value) & (t["base_rounds"] > 0)
            & (t["current_rounds"] == 0))
        return sorted(t.loc[gone, "cell"])


def _rounds(cell: pd.Series) -> list[float]:
    """Per-round medians of a cell (one per worker process or merged run; one entry
    for a single-round file). Normalisation by calibration scales every round
    alike, so the ordering test needs none."""
    rounds = cell.get("round_medians")
    return list(rounds) if isinstance(rounds, list) else []


def _sizes(cell: pd.Series) -> list[int]:
    sizes = cell.get("round_sizes")
    return list(sizes) if isinstance(sizes, list) else []


#: the comparison table's columns, in order
COLUMNS = ["cell", "verdict", "ratio", "ci_low", "ci_high", "p_value", "base_median_s",
           "current_median_s", "base_rounds", "current_rounds", "task", "backend",
           "variant", "device", "dtype", "phase", "note"]
#: what names a cell in the table besides its id (from the current run, else the baseline)
_IDENTITY = ("task", "backend", "variant", "device", "dtype", "phase")
_NO_CALIBRATION = "not normalised: no calibration cell"

Rates = dict[tuple[str, str], float]


def compare_runs(
    base: pd.DataFrame,
    current: pd.DataFrame,
    factor: float = FACTOR,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    noise: float = NOISE_BAND,
) -> Comparison:
    """Match cells by id and judge each; calibration cells are not judged. When the
    runs come from different machines each side's samples are first scaled by its
    machine's GEMM rate (`_normalised`)."""
    b_info: RunInfo = base.attrs.get("run") or RunInfo("baseline", "unknown")
    c_info: RunInfo = current.attrs.get("run") or RunInfo("current", "unknown")
    normalise = b_info.fingerprint != c_info.fingerprint
    rates = (_calibration_rates(base), _calibration_rates(current)) if normalise else None
    b_cells, c_cells = _timed(base), _timed(current)
    rows = [_judge(cell, _side(b_cells, cell), _side(c_cells, cell), rates,
                   factor, alpha, confidence, noise)
            for cell in sorted(set(b_cells.index) | set(c_cells.index))]
    uncalibrated = sum(row["note"] == _NO_CALIBRATION for row in rows)
    table = sort_table(pd.DataFrame(rows, columns=COLUMNS))
    return Comparison(table, b_info, c_info, factor, alpha, confidence, normalise,
                      tuple(_warnings(b_info, c_info, normalise, uncalibrated)),
                      environment=tuple(_environment_differences(base, current)), noise=noise)


def _timed(run: pd.DataFrame) -> pd.DataFrame:
    """A run's judged cells (every cell but the calibration), indexed by id."""
    return run[run["phase"] != CALIBRATION].set_index("cell")


def _side(cells: pd.DataFrame, cell: str) -> pd.Series | None:
    return cells.loc[cell] if cell in cells.index else None


def _judge(cell: str, b: pd.Series | None, c: pd.Series | None, rates: tuple[Rates, Rates]
           | None, factor: float, alpha: float, confidence: float, noise: float
           ) -> dict[str, Any]:
    """One row of the table: the cell as both runs have it and the rule's verdict (new
    or missing when only one run has it)."""
    ref = c if c is not None else b
    row: dict[str, Any] = {"cell": cell, "note": "", **{k: ref[k] for k in _IDENTITY}}
    for prefix, side in (("base", b), ("current", c)):
        row[f"{prefix}_median_s"] = side["median"] if side is not None else math.nan
        row[f"{prefix}_rounds"] = int(side["rounds"]) if side is not None else 0
    if b is None or c is None:
        row["verdict"] = (Verdict.NEW if b is None else Verdict.MISSING).value
        return row
    b_s, c_s, calibrated = _normalised(b, c, rates)
    if not calibrated:
        row["note"] = _NO_CALIBRATION
    change = compare_samples(b_s, c_s, factor, alpha, confidence,
                             _rounds(b), _rounds(c), _sizes(b), _sizes(c), noise,
                             seed_for(cell))
    row.update(ratio=change.ratio, ci_low=change.ci_low, ci_high=change.ci_high,
               p_value=change.p_value, verdict=change.verdict.value)
    if change.verdict is Verdict.ERROR:
        side = "baseline" if not len(b_s) else "current"
        err = (b if side == "baseline" else c)["error"]
        row["note"] = f"no samples in {side}" + (f": {err}" if err else "")
    return row


def _normalised(b: pd.Series, c: pd.Series, rates: tuple[Rates, Rates] | None
                ) -> tuple[Any, Any, bool]:
    """Both sides' samples, each times its own machine's GEMM rate when `rates` are
    given (time x GFLOP/s ~ work in GEMM-equivalent GFLOP, machine-neutral); False
    when a side lacks a calibration cell (the samples are then compared as timed)."""
    b_s, c_s = b["samples"], c["samples"]
    if rates is None or not (len(b_s) and len(c_s)):
        return b_s, c_s, True
    b_rate = _rate_for(rates[0], b["backend"], b["device"])
    c_rate = _rate_for(rates[1], c["backend"], c["device"])
    if b_rate and c_rate:
        return b_s * b_rate, c_s * c_rate, True
    return b_s, c_s, False


def _warnings(b_info: RunInfo, c_info: RunInfo, normalised: bool, uncalibrated: int
              ) -> list[str]:
    warnings = []
    if normalised:
        warnings.append(
            f"runs come from different machines ({b_info.fingerprint} vs "
            f"{c_info.fingerprint}): ratios are normalised by each run's GEMM calibration"
        )
    if uncalibrated:
        warnings.append(f"{uncalibrated} cell(s) could not be normalised (no calibration cell)")
    return warnings


def _environment_differences(base: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """What differs between the two runs' environments (framework versions, BLAS, ...)."""
    envs = {side: (df.attrs.get("machine_info") or {}).get("nnparity")
            for side, df in (("baseline", base), ("current", current))}
    return differences({k: v for k, v in envs.items() if isinstance(v, dict)})


def sort_table(table: pd.DataFrame) -> pd.DataFrame:
    """Verdicts that need attention first, then the largest ratio, then the id."""
    if table.empty:
        return table.reset_index(drop=True)
    order = table["verdict"].map(_VERDICT_ORDER.index)
    table = table.assign(_o=order, _r=-table["ratio"].fillna(0))
    table = table.sort_values(["_o", "_r", "cell"]).drop(columns=["_o", "_r"])
    return table.reset_index(drop=True)


def _fmt(x: float, spec: str) -> str:
    return number(x, spec, missing="-")


def _summary(cmp: Comparison) -> str:
    parts = [f"{cmp.count(v)} {v.value}" for v in Verdict]
    return ", ".join(parts)


def _header(cmp: Comparison) -> list[str]:
    def side(i: RunInfo) -> str:
        return f"{i.path} (commit {i.commit[:10] or '?'}, machine {i.fingerprint})"

    return [
        f"baseline: {side(cmp.base)}",
        f"current:  {side(cmp.current)}",
        (f"rule: ratio of medians > {cmp.factor:g} (or < 1/{cmp.factor:g}), p < {cmp.alpha:g}, "
         f"its {cmp.confidence:.0%} CI wholly outside the +-{cmp.noise:.0%} noise band, and in "
         f"every round when both sides have several; CI and p from a bootstrap that resamples "
         f"rounds (worker processes) then samples (a single-round side, e.g. an old "
         f"baseline, borrows the other side's process spread), or, for two single-round "
         f"sides, the sample bootstrap and a two-sided Mann-Whitney U test"),
        *([f"confirmation: flagged cells re-timed in {cmp.confirm_rounds} more interleaved "
           f"rounds per side; a verdict stands only if the re-timing repeats it"]
          if cmp.confirm_rounds else []),
        *[f"warning: {w}" for w in cmp.warnings],
        *[f"environment differs: {e}" for e in cmp.environment],
    ]


def _cells(cmp: Comparison) -> list[list[str]]:
    out = []
    for r in cmp.table.itertuples():
        ci = f"[{_fmt(r.ci_low, '.3f')}, {_fmt(r.ci_high, '.3f')}]"
        # "~": within noise, the report's rule (the interval reaches into the band)
        noise = "~" if not math.isnan(r.ratio) and within_noise(r.ci_low, r.ci_high,
                                                                cmp.noise) else ""
        out.append([r.verdict, noise + _fmt(r.ratio, ".3f"), ci, _fmt(r.p_value, ".2g"),
                    _fmt(r.base_median_s * 1e3, ".4g"), _fmt(r.current_median_s * 1e3, ".4g"),
                    r.cell + (f"  ({r.note})" if r.note else "")])
    return out


_HEAD = ["verdict", "ratio", "CI", "p", "base ms", "current ms", "cell"]


def format_text(cmp: Comparison) -> str:
    """A fixed-width table for terminals."""
    rows = [_HEAD, *_cells(cmp)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD) - 1)]
    lines = _header(cmp) + [""]
    for r in rows:
        padded = [v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)]
        lines.append("  ".join([*padded, r[-1]]))
    return "\n".join(lines + ["", _summary(cmp)]) + "\n"


def format_markdown(cmp: Comparison) -> str:
    """A GitHub-flavoured Markdown report (e.g. for a PR comment or job summary)."""
    lines = ["## nnparity compare", ""] + [f"- {md_text(h)}" for h in _header(cmp)] + [""]
    lines += ["| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    for r in _cells(cmp):
        r[0] = f"**{r[0]}**" if r[0] in ("regression", "improvement") else r[0]
        lines.append("| " + " | ".join(md_text(v) if i else v for i, v in enumerate(r)) + " |")
    return "\n".join(lines + ["", f"**{_summary(cmp)}**"]) + "\n"


def format_json(cmp: Comparison) -> str:
    """Machine-readable: run info, the rule, and one object per cell (NaN -> null)."""
    cells = json.loads(cmp.table.to_json(orient="records"))
    doc = {"baseline": cmp.base.__dict__, "current": cmp.current.__dict__,
           "factor": cmp.factor, "alpha": cmp.alpha, "confidence": cmp.confidence,
           "noise_band": cmp.noise,
           "test": "hierarchical bootstrap (rounds, then samples); mann-whitney-u two-sided "
                   "for two single-round sides", "normalised": cmp.normalised,
           "confirm_rounds": cmp.confirm_rounds,
           "warnings": list(cmp.warnings), "environment_differences": list(cmp.environment),
           "regressed": cmp.regressed, "lost": cmp.lost,
           "counts": {v.value: cmp.count(v) for v in Verdict}, "cells": cells}
    return json.dumps(doc, indent=2) + "\n"


def compared_cells(cmp: Comparison) -> int:
    """How many cells got a verdict on their timings (a gate that compared none fails)."""
    return int(cmp.table["verdict"].isin([Verdict.REGRESSION.value, Verdict.IMPROVEMENT.value,
                                          Verdict.UNCHANGED.value]).sum())


def exit_code(cmp: Comparison, allow_missing: bool = False) -> int:
    """`compare`'s exit code for `cmp`, without printing: 1 on a regression, or (unless
    `allow_missing`) on lost cells or when no cell was compared; else 0."""
    if not allow_missing and (cmp.lost or not compared_cells(cmp)):
        return 1
    return 1 if cmp.regressed else 0


def emit(cmp: Comparison, args: argparse.Namespace) -> int:
    """Print (and optionally write) the report; exit 1 on any regression."""
    render = format_json if args.json else format_markdown if args.markdown else format_text
    text = render(cmp)
    sys.stdout.write(text)
    if args.out:
        write_text_atomic(args.out, text)
    if not args.json:
        for w in cmp.warnings:
            print(f"warning: {w}", file=sys.stderr)
    if not compared_cells(cmp):  # a gate that checked nothing must not pass
        allowed = getattr(args, "allow_missing", False)
        print("no cell was compared: the runs share no timed cell"
              + (" (allowed by --allow-missing)" if allowed else
                 " (exit 1; --allow-missing to accept)"), file=sys.stderr)
        if not allowed:
            return 1
    lost = cmp.lost
    if lost:
        allowed = getattr(args, "allow_missing", False)
        print(f"{len(lost)} cell(s) the baseline timed are missing or errored in the current "
              f"run, e.g. {lost[0]}" + (" (allowed by --allow-missing)" if allowed else
                                        " (exit 1; --allow-missing to accept)"),
              file=sys.stderr)
        if not allowed:
            return 1
    return 1 if cmp.regressed else 0
