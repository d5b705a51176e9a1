"""Statistics for timing samples: a cell's median and its interval, and comparisons.

A cell's samples come from several worker processes ("rounds", recorded as
`round_sizes`: how many consecutive samples of `stats.data` each process
took). Samples of one process share its state (thread placement, caches,
frequency, a neighbour's burst), so they are not independent repeats: the
uncertainty of a cell's median is estimated by a seeded hierarchical bootstrap
that resamples rounds first, then samples within each chosen round
(`median_draws`, `cell_interval`). With one round (files written before
rounds existed) it is the ordinary bootstrap, which can only see the noise
within that one process.

The regression rule follows asv and criterion: a change is flagged only when
it is larger than a factor AND statistically real AND its confidence interval
lies wholly outside a noise band (`NOISE_BAND`, +-2%). Its size is the ratio of
medians with a percentile-bootstrap interval; its reality is, when a side has
several rounds, the hierarchical bootstrap's two-sided p-value (the share of
resampled ratios on the other side of 1), and for two single-round sides the
two-sided Mann-Whitney U test (scipy) as before; a run cannot pick the direction
of the test after seeing the data. The same interval and band give the
report's "~" (within noise) marker (`within_noise`).

This module must not read files, print, or import a framework; scipy is
imported lazily so `import bench` stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

#: bootstrap resamples; 2000 keeps the 95% interval's endpoints stable to ~1%
BOOTSTRAP_RESAMPLES = 2000
#: bootstrap seed: the same two sample sets always give the same interval
BOOTSTRAP_SEED = 0
#: a ratio counts as a difference only when its CI lies wholly outside [1/1.02, 1.02]
NOISE_BAND = 0.02
#: the comparison rule's defaults (`compare_samples`; `nnparity compare --factor/--alpha/
#: --confidence`): a change beyond 1.2x, significant at 1%, with its 95% interval
FACTOR = 1.2
ALPHA = 0.01
CONFIDENCE = 0.95
#: a cell is unstable when IQR / median reaches this (torch.utils.benchmark's rule) ...
UNSTABLE_IQR = 0.10
#: ... or when its rounds disagree: slowest round median / fastest above 1 + this
ROUNDS_DISAGREE = 0.10


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



def split_rounds(samples: Sequence[float] | np.ndarray,
                 round_sizes: Sequence[int] = ()) -> list[np.ndarray]:
    """The samples of each round, in order. Sizes that do not add up to the sample
    count (or none: a file written before rounds) make the whole set one round."""
    x = np.asarray(samples, dtype=float).ravel()
    sizes = [int(n) for n in round_sizes or () if int(n) > 0]
    if len(sizes) < 2 or sum(sizes) != x.size:
        return [x]
    return np.split(x, np.cumsum(sizes)[:-1])


def _row_medians(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of each row's first `counts[i]` finite values (rows padded with +inf)."""
    ordered = np.sort(values, axis=1)  # the +inf padding sorts last
    rows = np.arange(values.shape[0])
    lo, hi = (counts - 1) // 2, counts // 2
    return (ordered[rows, lo] + ordered[rows, hi]) / 2.0


def median_draws(samples: Sequence[float] | np.ndarray, round_sizes: Sequence[int] = (),
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """`resamples` bootstrap replicates of the pooled median, resampling rounds with
    replacement, then each chosen round's samples with replacement (a two-level,
    hierarchical bootstrap); one round: the ordinary bootstrap. Seeded."""
    rounds = split_rounds(samples, round_sizes)
    rng = np.random.default_rng(seed)
    if len(rounds) == 1:
        x = rounds[0]
        if x.size == 0:
            return np.full(resamples, np.nan)
        return np.median(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)
    x = np.concatenate(rounds)
    sizes = np.array([r.size for r in rounds])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    k, widest = len(rounds), int(sizes.max())
    pick = rng.integers(0, k, size=(resamples, k))  # which rounds each replicate holds
    n = sizes[pick]  # (resamples, k)
    within = np.floor(rng.random((resamples, k, widest)) * n[..., None]).astype(np.int64)
    values = x[starts[pick][..., None] + np.minimum(within, n[..., None] - 1)]
    valid = np.arange(widest)[None, None, :] < n[..., None]
    values = np.where(valid, values, np.inf).reshape(resamples, k * widest)
    return _row_medians(values, n.sum(axis=1))


def percentile_interval(draws: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap replicates."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class CellInterval:
    """A cell's median with its confidence interval and stability verdict."""

    median: float
    low: float
    high: float
    samples: int
    rounds: int
    round_medians: tuple[float, ...]
    iqr_rel: float  # pytest-benchmark's IQR over the pooled samples, / median
    unstable: str  # "" or why: "IQR 14% of the median", "rounds disagree by 23%"
    #: the bootstrap replicates of the median: ratios of two cells take theirs
    draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to the median (0.03: +-3%)."""
        return (self.high - self.low) / 2.0 / self.median if self.median > 0 else math.nan


def cell_interval(samples: Sequence[float] | np.ndarray, round_sizes: Sequence[int] = (),
                  confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> CellInterval:
    """A cell's median, its `confidence` interval from the raw samples (rounds
    resampled, then samples: `median_draws`), and whether it is unstable: IQR /
    median >= `UNSTABLE_IQR`, or its round medians spread by more than
    `ROUNDS_DISAGREE`. The median and IQR are pytest-benchmark's (`stats_block`)."""
    from bench.results.schema import stats_block

    rounds = split_rounds(samples, round_sizes)
    pooled = np.concatenate(rounds)
    if pooled.size == 0:
        nan = math.nan
        return CellInterval(nan, nan, nan, 0, 0, (), nan, "no samples")
    block = stats_block(pooled)
    median, iqr_rel = float(block["median"]), float(block["iqr"]) / float(block["median"])
    draws = median_draws(pooled, [r.size for r in rounds], resamples, seed)
    low, high = percentile_interval(draws, confidence)
    medians = tuple(float(np.median(r)) for r in rounds)
    spread = max(medians) / min(medians) - 1.0 if len(medians) > 1 else 0.0
    why = []
    if iqr_rel >= UNSTABLE_IQR:
        why.append(f"IQR {iqr_rel:.0%} of the median")
    if spread > ROUNDS_DISAGREE:
        why.append(f"rounds disagree by {spread:.0%}")
    return CellInterval(median, low, high, int(pooled.size), len(rounds), medians, iqr_rel,
                        "; ".join(why), draws)


def _borrowed_spread(draws: np.ndarray, median: float, seed: int) -> np.ndarray:
    """The other side's replicates relative to its median, in a fresh random order."""
    rel = np.asarray(draws, dtype=float) / median if median > 0 else np.ones(len(draws))
    return np.random.default_rng(seed).permutation(rel)


def ratio_interval(numerator: CellInterval, denominator: CellInterval,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """(ratio of medians, low, high) of two cells' intervals, from their replicates."""
    if not (numerator.median > 0 and denominator.median > 0):
        return math.nan, math.nan, math.nan
    low, high = percentile_interval(ratio_draws(numerator.draws, denominator.draws),
                                    confidence)
    return numerator.median / denominator.median, low, high


def ratio_draws(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of a ratio of medians from each side's own replicates
    (independent resampling of the two sides)."""
    return np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)


def bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided bootstrap p-value that a ratio is 1: twice the smaller share of
    replicates on either side of 1 (with the +1 correction, never exactly 0)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return 1.0
    below, above = int((draws <= 1.0).sum()), int((draws >= 1.0).sum())
    return float(min(1.0, 2.0 * (min(below, above) + 1) / (draws.size + 1)))


def within_noise(low: float, high: float, band: float = NOISE_BAND) -> bool:
    """The "~" rule: a ratio's interval that reaches into [1/(1+band), 1+band] is
    within noise (not a difference); only an interval wholly beyond it counts. NaN
    bounds (no interval) are within noise."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return True
    return not (low > 1.0 + band or high < 1.0 / (1.0 + band))


def seed_for(name: str, side: int = 0) -> int:
    """A stable per-cell bootstrap seed (zlib.crc32; Python's hash() is salted), so
    two cells never share their resampling pattern and a rerun repeats its numbers."""
    import zlib

    return (zlib.crc32(str(name).encode()) * 4 + side) % (2**32)


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
    factor: float = FACTOR,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    base_rounds: Sequence[float] = (),
    current_rounds: Sequence[float] = (),
    base_sizes: Sequence[int] = (),
    current_sizes: Sequence[int] = (),
    noise: float = NOISE_BAND,
    seed: int = BOOTSTRAP_SEED,
) -> Change:
    """Ratio of medians, its interval, the p-value, and the verdict.

    Regression iff ratio > factor, p < alpha and the interval lies wholly above
    1 + noise; improvement iff ratio < 1/factor, p < alpha and the interval lies
    wholly below 1/(1 + noise); anything else is unchanged. When a side holds
    several rounds (worker processes: `*_sizes`, or merged runs: `*_rounds`,
    their medians) the interval and p come from the hierarchical bootstrap
    (rounds, then samples), which sees how much a cell moves from one process to
    the next; two single-round sides keep the sample bootstrap and the U test.
    A single-round side facing a several-round one borrows that side's relative
    spread (`_borrowed_spread`): an old single-process baseline is not taken as
    knowing its cell to within its one process's noise. When both sides hold
    several rounds a change must also show in every round: every current round's
    median beyond every baseline round's.
    """
    base = np.asarray(baseline, dtype=float)
    cur = np.asarray(current, dtype=float)
    if base.size == 0 or cur.size == 0:
        nan = float("nan")
        return Change(nan, nan, nan, nan, Verdict.ERROR)
    ratio = float(np.median(cur) / np.median(base))
    b_parts, c_parts = split_rounds(base, base_sizes), split_rounds(cur, current_sizes)
    if len(b_parts) > 1 or len(c_parts) > 1:
        c_draws = median_draws(cur, [len(x) for x in c_parts], seed=seed + 1)
        b_draws = median_draws(base, [len(x) for x in b_parts], seed=seed)
        # a single-round side (a file written before rounds, e.g. an old baseline) cannot
        # show how much a cell moves between processes: it is given the other side's
        # relative spread (its replicates over its median), resampled independently
        if len(b_parts) == 1:
            b_draws = b_draws * _borrowed_spread(c_draws, float(np.median(cur)), seed + 2)
        elif len(c_parts) == 1:
            c_draws = c_draws * _borrowed_spread(b_draws, float(np.median(base)), seed + 3)
        draws = ratio_draws(c_draws, b_draws)
        low, high = percentile_interval(draws, confidence)
        p = bootstrap_p(draws)
    else:
        low, high = bootstrap_ratio_ci(base, cur, confidence, seed=seed)
        p = mann_whitney_p(base, cur)
    b_med = list(base_rounds) or ([float(np.median(x)) for x in b_parts]
                                  if len(b_parts) > 1 else [])
    c_med = list(current_rounds) or ([float(np.median(x)) for x in c_parts]
                                     if len(c_parts) > 1 else [])
    several = len(b_med) > 1 and len(c_med) > 1
    slower = not several or min(c_med) > max(b_med)
    faster = not several or max(c_med) < min(b_med)
    if ratio > factor and p < alpha and slower and low > 1.0 + noise:
        verdict = Verdict.REGRESSION
    elif ratio < 1.0 / factor and p < alpha and faster and high < 1.0 / (1.0 + noise):
        verdict = Verdict.IMPROVEMENT
    else:
        verdict = Verdict.UNCHANGED
    return Change(ratio, low, high, p, verdict)
