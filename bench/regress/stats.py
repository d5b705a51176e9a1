"""Statistics for comparing two sets of timing samples (no I/O, no frameworks).

The regression rule follows asv: a change is flagged only when it is both
larger than a factor AND statistically real on the raw samples. The size of a
change is the ratio of medians, with a seeded percentile-bootstrap confidence
interval; its reality is a two-sided Mann-Whitney U test (scipy), so a run
cannot pick the direction of the test after seeing the data.

This module must not read files, print, or import a framework; scipy is
imported lazily so `import bench` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

#: bootstrap resamples; 2000 keeps the 95% interval's endpoints stable to ~1%
BOOTSTRAP_RESAMPLES = 2000
#: bootstrap seed: the same two sample sets always give the same interval
BOOTSTRAP_SEED = 0


class Verdict(StrEnum):
    """What a comparison of one cell concluded."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    UNCHANGED = "unchanged"  # within the factor, or not statistically real
    NEW = "new"  # only in the current run
    MISSING = "missing"  # only in the baseline
    ERROR = "error"  # a side has no samples (the cell errored or was empty)


@dataclass(frozen=True)
class Change:
    """The comparison of one cell's baseline samples with its current samples."""

    ratio: float  # median(current) / median(baseline); > 1 means slower
    ci_low: float
    ci_high: float
    p_value: float  # two-sided Mann-Whitney U
    verdict: Verdict



def bootstrap_ratio_ci(
    baseline: np.ndarray,
    current: np.ndarray,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap interval for median(current) / median(baseline).

    Each side is resampled independently with replacement; both sides come
    from the same seeded generator so the interval is reproducible.
    """
    rng = np.random.default_rng(seed)
    base = np.asarray(baseline, dtype=float)
    cur = np.asarray(current, dtype=float)
    base_idx = rng.integers(0, base.size, size=(resamples, base.size))
    cur_idx = rng.integers(0, cur.size, size=(resamples, cur.size))
    ratios = np.median(cur[cur_idx], axis=1) / np.median(base[base_idx], axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return float(low), float(high)


def mann_whitney_p(baseline: np.ndarray, current: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value; 1.0 when the test is undefined.

    With no ties and at most 8 samples a side scipy uses the exact
    distribution; note that 5 samples a side is the least that can reach
    p < 0.01 (exact minimum 2/252), so fewer rounds can never flag anything.
    """
    from scipy.stats import mannwhitneyu  # lazy: scipy costs ~0.3 s to import

    base = np.asarray(baseline, dtype=float)
    cur = np.asarray(current, dtype=float)
    if base.size == 0 or cur.size == 0:
        return 1.0
    if np.all(base == base[0]) and np.all(cur == base[0]):
        return 1.0  # identical constants: scipy would warn and return nan
    return float(mannwhitneyu(cur, base, alternative="two-sided").pvalue)


def compare_samples(
    baseline: np.ndarray,
    current: np.ndarray,
    factor: float = 1.2,
    alpha: float = 0.01,
    confidence: float = 0.95,
    base_rounds: Sequence[float] = (),
    current_rounds: Sequence[float] = (),
) -> Change:
    """Ratio of medians, its interval, the U-test p-value, and the verdict.

    Regression iff ratio > factor and p < alpha; improvement iff
    ratio < 1/factor and p < alpha; anything else is unchanged. When both
    sides hold several rounds (separate processes, as `continuous` runs them),
    a change must also show in every round: every current round's median
    beyond every baseline round's. Samples within one process share its
    state (placement, caches, frequency), so the U test alone overstates how
    independent they are; rounds are the independent repeats.
    """
    base = np.asarray(baseline, dtype=float)
    cur = np.asarray(current, dtype=float)
    if base.size == 0 or cur.size == 0:
        nan = float("nan")
        return Change(nan, nan, nan, nan, Verdict.ERROR)
    ratio = float(np.median(cur) / np.median(base))
    low, high = bootstrap_ratio_ci(base, cur, confidence)
    p = mann_whitney_p(base, cur)
    several = len(base_rounds) > 1 and len(current_rounds) > 1
    slower = not several or min(current_rounds) > max(base_rounds)
    faster = not several or max(current_rounds) < min(base_rounds)
    if ratio > factor and p < alpha and slower:
        verdict = Verdict.REGRESSION
    elif ratio < 1.0 / factor and p < alpha and faster:
        verdict = Verdict.IMPROVEMENT
    else:
        verdict = Verdict.UNCHANGED
    return Change(ratio, low, high, p, verdict)
