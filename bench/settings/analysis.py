"""What a settings sweep found: each setting's speed-up over the default, and the best safe one.

A setting's speed-up in a cell is median(default) / median(setting) (above 1: faster),
with its 95% interval from the two cells' hierarchical bootstrap replicates
(`bench.results.stats.cell_interval`, `ratio_interval`); it counts as a difference only
when the interval lies wholly outside the +-2% noise band (`within_noise`: "~"
otherwise), the rule of every other table of the report.

Safe means the setting's program agreed with the float64 reference under gradcheck's
tolerance model (verdict "agrees" or "agrees, N kink flips"). A setting that
disagrees, whose check errored, or that was not checked, is never safe, however fast.

- Best safe setting of a cell: the fastest safe setting whose speed-up is beyond
  noise (interval wholly above 1.02); none when no safe setting is.
- Best safe setting of a framework: among settings that are safe in every cell they
  were timed in and slower beyond noise in none, the one with the highest geometric
  mean speed-up over those cells, provided it is faster beyond noise in at least one.
- Defaults and tuned (`tuned`): per workload (the same task configuration, phase,
  batch and dtype in every framework), each framework's default median beside its
  median with the framework's best safe setting ("tuned"; the default where that
  setting was not timed in this workload), and the frameworks ranked both ways;
  neighbours in a ranking whose ratio is within noise are a tie.

This module reads no file and imports no framework.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.results.stats import (
    NOISE_BAND,
    CellInterval,
    cell_interval,
    ratio_interval,
    seed_for,
    within_noise,
)

DEFAULT = "default"


@dataclass(frozen=True)
class Row:
    """One setting in one cell."""

    cell: str
    backend: str
    task: str
    phase: str
    setting: str
    median_s: float  # nan when it has no samples
    speedup: float  # default / setting; nan without both sides
    low: float
    high: float
    noise: bool  # the "~" rule: the interval reaches into the noise band
    verdict: str  # "agrees", "agrees, N kink flips", "disagrees", "error", "not checked"
    safe: bool
    error: str = ""
    check_error: str = ""  # why the agreement check could not run (verdict "error")
    #: the median's interval and bootstrap replicates (None without samples)
    interval: CellInterval | None = field(default=None, compare=False, repr=False)

    @property
    def faster(self) -> bool:
        return self.speedup > 1 and not self.noise and math.isfinite(self.low)

    @property
    def slower(self) -> bool:
        return self.speedup < 1 and not self.noise and math.isfinite(self.high)


def verdict_of(gradcheck: Mapping[str, Any] | None) -> tuple[str, bool]:
    """(the agreement verdict as the table shows it, whether it is safe)."""
    if not gradcheck:
        return "not checked", False
    passed = gradcheck.get("passed")
    if passed is True:
        return str(gradcheck.get("verdict") or "agrees"), True
    if passed is False:
        verdict = str(gradcheck.get("verdict") or "disagrees")
        return ("error" if verdict == "error" else "disagrees"), False
    return "not checked", False


def _interval(item: Mapping[str, Any]) -> CellInterval | None:
    samples = item.get("samples") or []
    if not samples:
        return None
    return cell_interval(samples, item.get("round_sizes") or (), seed=seed_for(item["id"]))


def rows(items: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Every (cell, setting) with its speed-up over the cell's default, default first."""
    by_cell: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        by_cell.setdefault(item["cell"], []).append(item)
    out = []
    for cell, group in sorted(by_cell.items()):
        base = next((i for i in group if i["setting"] == DEFAULT), None)
        base_ci = _interval(base) if base else None
        group = sorted(group, key=lambda i: (i["setting"] != DEFAULT, i["setting"]))
        for item in group:
            ci = _interval(item)
            verdict, safe = verdict_of(item.get("gradcheck"))
            nan = math.nan
            if ci is not None and base_ci is not None:
                speedup, low, high = ratio_interval(base_ci, ci)
            else:
                speedup, low, high = nan, nan, nan
            errors = item.get("errors") or []
            out.append(Row(cell, item["backend"], item["task"], item["phase"], item["setting"],
                           ci.median if ci else nan, speedup, low, high,
                           within_noise(low, high), verdict, safe,
                           errors[0] if errors and ci is None else "",
                           str((item.get("gradcheck") or {}).get("error") or "")
                           if verdict == "error" else "", ci))
    return out


def best_in_cell(cell_rows: Iterable[Row]) -> Row | None:
    """The fastest safe setting beyond noise in one cell, or None."""
    found = [r for r in cell_rows if r.setting != DEFAULT and r.safe and r.faster]
    return max(found, key=lambda r: r.speedup, default=None)


@dataclass(frozen=True)
class Best:
    backend: str
    setting: str  # DEFAULT when no setting qualifies
    geomean: float
    cells: int
    why: str


def best_per_backend(all_rows: Iterable[Row]) -> dict[str, Best]:
    """Each framework's best safe setting (module docstring)."""
    by_backend: dict[str, dict[str, list[Row]]] = {}
    for r in all_rows:
        if r.setting != DEFAULT:
            by_backend.setdefault(r.backend, {}).setdefault(r.setting, []).append(r)
        else:
            by_backend.setdefault(r.backend, {})
    out = {}
    for backend, settings in sorted(by_backend.items()):
        candidates = []
        for name, rs in settings.items():
            timed = [r for r in rs if math.isfinite(r.speedup)]
            if not timed or not all(r.safe for r in rs):
                continue
            if any(r.slower for r in timed) or not any(r.faster for r in timed):
                continue
            geo = math.exp(sum(math.log(r.speedup) for r in timed) / len(timed))
            candidates.append(Best(backend, name, geo, len(timed),
                                   f"faster beyond noise in {sum(r.faster for r in timed)} "
                                   f"of {len(timed)} cells, agrees in all"))
        best = max(candidates, key=lambda b: b.geomean, default=None)
        out[backend] = best or Best(backend, DEFAULT, 1.0, 0,
                                    "no agreeing setting is faster beyond noise "
                                    f"(+-{NOISE_BAND:.0%}) without being slower in a cell")
    return out


def workload(cell: str) -> str:
    """A cell id without its backend and variant: the same workload in every framework
    (`preset/task[knobs]/BACKEND/VARIANT/device/dtype/bsN/phase`)."""
    parts = cell.split("/")
    return "/".join(parts[:2] + parts[4:]) if len(parts) >= 8 else cell


@dataclass(frozen=True)
class Tuned:
    """One framework in one workload: its default and its best safe setting."""

    workload: str
    backend: str
    default: Row
    tuned: Row  # the default row itself when the best safe setting was not timed here

    @property
    def setting(self) -> str:
        return self.tuned.setting


@dataclass(frozen=True)
class Ranked:
    backend: str
    median_s: float
    tie: bool  # within noise of the framework ranked just above it


def tuned(all_rows: Iterable[Row], best: Mapping[str, Best]) -> dict[str, list[Tuned]]:
    """Workload -> each framework's default and tuned rows (module docstring)."""
    by: dict[tuple[str, str], dict[str, Row]] = {}
    for r in all_rows:
        by.setdefault((workload(r.cell), r.backend), {})[r.setting] = r
    out: dict[str, list[Tuned]] = {}
    for (work, backend), settings in sorted(by.items()):
        default = settings.get(DEFAULT)
        if default is None or default.interval is None:
            continue
        chosen = best.get(backend)
        row = settings.get(chosen.setting) if chosen else None
        if row is None or row.interval is None or not row.safe:
            row = default
        out.setdefault(work, []).append(Tuned(work, backend, default, row))
    return out


def ranking(entries: Iterable[tuple[str, CellInterval]]) -> list[Ranked]:
    """Frameworks fastest first; a tie where the ratio to the one above is within noise."""
    ordered = sorted(entries, key=lambda e: e[1].median)
    out = []
    for i, (backend, ci) in enumerate(ordered):
        tie = False
        if i:
            _, low, high = ratio_interval(ci, ordered[i - 1][1])
            tie = within_noise(low, high)
        out.append(Ranked(backend, ci.median, tie))
    return out
