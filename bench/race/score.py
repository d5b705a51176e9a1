"""The race's rules as functions (no I/O, no frameworks): olympic scoring and the failure rule.

MLPerf Training's scoring: of N seeds, drop the fastest and the slowest and
average the rest; a seed that does not reach the target counts as the
slowest (it is the one dropped), and an entry with more than
`MAX_FAILED_SEEDS` such seeds, or with no finite average left (fewer than 3
seeds drop none, so one miss there is a failure), is marked failed. The interval shown is the
range of the seeds that were averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.race.config import MAX_FAILED_SEEDS


@dataclass(frozen=True)
class Olympic:
    mean: float  # mean of the kept values
    low: float  # the kept values' range
    high: float
    kept: int


def olympic(values: Sequence[float]) -> Olympic:
    """Drop the lowest and the highest value (when there are at least 3) and average
    the rest; `math.inf` stands for a seed that did not finish and is dropped as the
    highest. NaN when no finite value is kept."""
    ordered = sorted(float(v) for v in values)
    kept = ordered[1:-1] if len(ordered) >= 3 else ordered
    if not kept or not all(math.isfinite(v) for v in kept):
        nan = float("nan")
        return Olympic(nan, nan, nan, len(kept))
    return Olympic(sum(kept) / len(kept), kept[0], kept[-1], len(kept))


@dataclass(frozen=True)
class EntryScore:
    status: str  # "ok" or "failed"
    seeds: int
    failed: int  # seeds that missed the target (errors included)
    warm: Olympic  # seconds, clock start to target, the first step's compile left out
    cold: Olympic  # seconds, start-up + compile + warm
    steps: Olympic  # optimiser steps to target
    steps_min: int | None  # over the seeds that reached the target
    steps_max: int | None
    startup_s: float  # of the entry's first seed (a fresh process pays this)
    compile_s: float
    eval_share: float  # evaluation's share of the clock, over the seeds that reached it


def score_entry(runs: Sequence[dict]) -> EntryScore:
    """Score one entry (its runs, one per seed, as `bench.race.worker` writes them)."""
    runs = sorted(runs, key=lambda r: r["seed"])
    ok = [r for r in runs if r["reached"] and not r["error"]]
    failed = len(runs) - len(ok)
    first = next((r for r in runs if not r["error"]), None)
    startup = first["startup_s"] if first else float("nan")
    compile_s = first["compile_s"] if first else float("nan")
    inf = math.inf
    warm = [r["warm_s"] if r in ok else inf for r in runs]
    cold = [startup + compile_s + r["warm_s"] if r in ok else inf for r in runs]
    steps = [r["steps"] if r in ok else inf for r in runs]
    warm_score = olympic(warm)
    # at most MAX_FAILED_SEEDS misses, and a score to show: with fewer than 3 seeds no
    # seed is dropped, so one miss there leaves no finite mean, which is no result
    status = ("ok" if runs and failed <= MAX_FAILED_SEEDS and math.isfinite(warm_score.mean)
              else "failed")
    train_s = sum(r["train_s"] for r in ok)
    share = sum(r["eval_s"] for r in ok) / train_s if train_s > 0 else float("nan")
    return EntryScore(
        status=status, seeds=len(runs), failed=failed,
        warm=warm_score, cold=olympic(cold), steps=olympic(steps),
        steps_min=min((r["steps"] for r in ok), default=None),
        steps_max=max((r["steps"] for r in ok), default=None),
        startup_s=startup if startup is not None else float("nan"),
        compile_s=compile_s if compile_s is not None else float("nan"),
        eval_share=share)
