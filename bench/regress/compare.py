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
    Change,
    RoundPrior,
    Verdict,
    compare_samples,
    detectable_ratio,
    holm,
    log_round_medians,
    round_prior,
    seed_for,
    verdict_of,
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
    #: the comparison's resolution: the slow-down a cell needs to be flagged at this
    #: family size, from each cell's rounds (median and 90th percentile over the cells)
    detectable: tuple[float, float] = (math.nan, math.nan)

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
COLUMNS = ["cell", "verdict", "ratio", "ci_low", "ci_high", "p_value", "p_adjusted",
           "base_median_s",
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
    sides = {cell: (_side(b_cells, cell), _side(c_cells, cell))
             for cell in sorted(set(b_cells.index) | set(c_cells.index))}
    priors = _priors(sides)
    prior_of = {cell: priors.get(_group(b, c), priors.get(None)) for cell, (b, c) in
                sides.items()}
    judged = [_judge(cell, b, c, rates, factor, alpha, confidence, noise, prior_of[cell])
              for cell, (b, c) in sides.items()]
    rows = _family(judged, factor, alpha, noise)
    uncalibrated = sum(row["note"] == _NO_CALIBRATION for row in rows)
    table = sort_table(pd.DataFrame(rows, columns=COLUMNS))
    return Comparison(table, b_info, c_info, factor, alpha, confidence, normalise,
                      tuple(_warnings(b_info, c_info, normalise, uncalibrated)
                            + _settings_warning(base, current)),
                      environment=tuple(_environment_differences(base, current)), noise=noise,
                      detectable=_resolution(sides, prior_of, judged, factor, alpha))


def _resolution(sides: dict[str, tuple[pd.Series | None, pd.Series | None]],
                prior_of: dict[str, RoundPrior | None],
                judged: list[tuple[dict[str, Any], Change | None]], factor: float,
                alpha: float) -> tuple[float, float]:
    """The slow-down each cell needs to be flagged: beyond `factor`, and significant at
    alpha over the family (Holm's first step, alpha / cells), from its rounds; the
    median and the 90th percentile over the cells the rounds test judges."""
    family = sum(ch is not None and math.isfinite(ch.p_value) for _, ch in judged)
    if not family:
        return math.nan, math.nan
    need = []
    for cell, (b, c) in sides.items():
        if b is None or c is None or not (len(b["samples"]) and len(c["samples"])):
            continue
        r = detectable_ratio(_log_rounds(b), _log_rounds(c), alpha / family, prior_of[cell])
        if math.isfinite(r):
            need.append(max(factor, r))
    if not need:
        return math.nan, math.nan
    return float(np.median(need)), float(np.percentile(need, 90))


def _timed(run: pd.DataFrame) -> pd.DataFrame:
    """A run's judged cells (every cell but the calibration), indexed by id."""
    return run[run["phase"] != CALIBRATION].set_index("cell")


def _side(cells: pd.DataFrame, cell: str) -> pd.Series | None:
    return cells.loc[cell] if cell in cells.index else None


def _group(b: pd.Series | None, c: pd.Series | None) -> tuple[str, str]:
    ref = c if c is not None else b
    return (str(ref["backend"]), str(ref["device"])) if ref is not None else ("", "")


def _log_rounds(side: pd.Series) -> np.ndarray:
    return log_round_medians(side["samples"], _sizes(side), _rounds(side))


def _priors(sides: dict[str, tuple[pd.Series | None, pd.Series | None]]
            ) -> dict[tuple[str, str] | None, RoundPrior]:
    """The round spread typical of each framework and device in this comparison (and,
    under None, of all its cells): each cell's own spread is moderated towards it."""
    groups: dict[tuple[str, str] | None, list[tuple[np.ndarray, np.ndarray]]] = {}
    for b, c in sides.values():
        if b is None or c is None or not (len(b["samples"]) and len(c["samples"])):
            continue
        pair = (_log_rounds(b), _log_rounds(c))
        groups.setdefault(_group(b, c), []).append(pair)
        groups.setdefault(None, []).append(pair)
    found = {key: round_prior(pairs) for key, pairs in groups.items()}
    return {key: prior for key, prior in found.items() if prior is not None}


def _judge(cell: str, b: pd.Series | None, c: pd.Series | None, rates: tuple[Rates, Rates]
           | None, factor: float, alpha: float, confidence: float, noise: float,
           prior: RoundPrior | None = None) -> tuple[dict[str, Any], Change | None]:
    """One row of the table: the cell as both runs have it and the rule's verdict for
    the cell alone (new or missing when only one run has it), with its `Change`."""
    ref = c if c is not None else b
    row: dict[str, Any] = {"cell": cell, "note": "", **{k: ref[k] for k in _IDENTITY}}
    for prefix, side in (("base", b), ("current", c)):
        row[f"{prefix}_median_s"] = side["median"] if side is not None else math.nan
        row[f"{prefix}_rounds"] = int(side["rounds"]) if side is not None else 0
    if b is None or c is None:
        row["verdict"] = (Verdict.NEW if b is None else Verdict.MISSING).value
        return row, None
    b_k, c_k, calibrated = _normalised(b, c, rates)
    if not calibrated:
        row["note"] = _NO_CALIBRATION
    b_s, c_s = b["samples"] * b_k, c["samples"] * c_k
    change = compare_samples(b_s, c_s, factor, alpha, confidence,
                             [m * b_k for m in _rounds(b)], [m * c_k for m in _rounds(c)],
                             _sizes(b), _sizes(c), noise, seed_for(cell), prior)
    row.update(ratio=change.ratio, ci_low=change.ci_low, ci_high=change.ci_high,
               p_value=change.p_value, verdict=change.verdict.value)
    if change.verdict is Verdict.ERROR:
        side = "baseline" if not len(b_s) else "current"
        err = (b if side == "baseline" else c)["error"]
        row["note"] = f"no samples in {side}" + (f": {err}" if err else "")
    return row, change


def _family(judged: list[tuple[dict[str, Any], Change | None]], factor: float, alpha: float,
            noise: float) -> list[dict[str, Any]]:
    """The cells compared are one family: each p-value is Holm-adjusted over them and the
    verdict re-judged with it (an A/A comparison of hundreds of cells would otherwise
    flag about alpha of them by chance)."""
    adjusted = holm([ch.p_value if ch is not None and ch.verdict is not Verdict.ERROR
                     else math.nan for _, ch in judged])
    rows = []
    for (row, change), p_adj in zip(judged, adjusted, strict=True):
        row["p_adjusted"] = p_adj
        if change is not None and change.verdict is not Verdict.ERROR:
            row["verdict"] = verdict_of(change.ratio, change.ci_low, change.ci_high, p_adj,
                                        change.slower, change.faster, factor, alpha,
                                        noise).value
        rows.append(row)
    return rows


def _normalised(b: pd.Series, c: pd.Series, rates: tuple[Rates, Rates] | None
                ) -> tuple[float, float, bool]:
    """The factor each side's times are multiplied by: its own machine's GEMM rate when
    `rates` are given (time x GFLOP/s ~ work in GEMM-equivalent GFLOP, machine-neutral),
    else 1; False when a side lacks a calibration cell (then compared as timed)."""
    if rates is None or not (len(b["samples"]) and len(c["samples"])):
        return 1.0, 1.0, True
    b_rate = _rate_for(rates[0], b["backend"], b["device"])
    c_rate = _rate_for(rates[1], c["backend"], c["device"])
    if b_rate and c_rate:
        return b_rate, c_rate, True
    return 1.0, 1.0, False


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


def _settings_warning(base: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """A tuned run (`run --settings`) against a default one, or two tunings: said, since
    the ratios then measure the settings as well as the code."""
    def shown(df: pd.DataFrame) -> str:
        tuned = {k: v for k, v in (df.attrs.get("settings") or {}).items()
                 if k != "source" and v != "default"}
        return ", ".join(f"{b} {s}" for b, s in sorted(tuned.items())) or "defaults"

    b, c = shown(base), shown(current)
    return [] if b == c else [f"the runs used different speed settings (baseline: {b}; "
                              f"current: {c}): the ratios include their effect"]


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
        (f"rule: ratio of medians > {cmp.factor:g} (or < 1/{cmp.factor:g}), p < {cmp.alpha:g} "
         f"after Holm's adjustment over the {compared_cells(cmp)} cells compared (family-wise), "
         f"its {cmp.confidence:.0%} CI wholly outside the +-{cmp.noise:.0%} noise band, and in "
         f"every round when both sides have several; CI and p from a t-test on the log round "
         f"medians (worker processes), each cell's round spread moderated by its framework's "
         f"typical one (a single-round side, e.g. an old baseline, counts as one process), "
         f"or, for two single-round sides, the sample bootstrap and a two-sided "
         f"Mann-Whitney U test"),
        *([f"resolution: with these rounds and this many cells, a slow-down must reach "
           f"about {cmp.detectable[0]:.2f}x to be flagged (half the cells; "
           f"{cmp.detectable[1]:.2f}x for 90% of them); more rounds (`run --rounds`) "
           f"resolve smaller changes"] if math.isfinite(cmp.detectable[0]) else []),
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
                    _fmt(getattr(r, "p_adjusted", math.nan), ".2g"),
                    _fmt(r.base_median_s * 1e3, ".4g"), _fmt(r.current_median_s * 1e3, ".4g"),
                    r.cell + (f"  ({r.note})" if r.note else "")])
    return out


_HEAD = ["verdict", "ratio", "CI", "p", "p Holm", "base ms", "current ms", "cell"]


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
           "test": "moderated t-test on log round medians; mann-whitney-u two-sided for "
                   "two single-round sides; holm-adjusted over the cells compared",
           "normalised": cmp.normalised,
           "confirm_rounds": cmp.confirm_rounds,
           "detectable_ratio": {"median": _finite(cmp.detectable[0]),
                                "p90": _finite(cmp.detectable[1])},
           "warnings": list(cmp.warnings), "environment_differences": list(cmp.environment),
           "regressed": cmp.regressed, "lost": cmp.lost,
           "counts": {v.value: cmp.count(v) for v in Verdict}, "cells": cells}
    return json.dumps(doc, indent=2) + "\n"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


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
