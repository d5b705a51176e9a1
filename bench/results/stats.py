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
medians. When a side has several rounds, the worker process is the unit of
replication: the test and the interval come from the log round medians
(`rounds_test`), a two-sample t-test whose variance is each cell's own round
spread moderated by the spread typical of its framework in the same comparison
(`RoundPrior`; the empirical-Bayes "moderated t" of many-tests-few-replicates
statistics), so two or three processes a side neither claim p ~ 0 (the old
bootstrap over three rounds did: it cannot resample beyond the values it saw)
nor lose all power to a t distribution with two degrees of freedom. Two
single-round sides keep the percentile bootstrap and the two-sided Mann-Whitney
U test (scipy). A comparison of many cells is one family: `holm` adjusts the
p-values (Holm's step-down, family-wise error <= alpha), so an A/A comparison of
276 cells is not expected to flag ~3 of them by chance at alpha 1%. A run cannot
pick the direction of the test after seeing the data. The same interval and band
give the report's "~" (within noise) marker (`within_noise`).

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
    p_value: float  # two-sided: the rounds' moderated t-test, or Mann-Whitney U (one round)
    verdict: Verdict
    #: every current round's median beyond every baseline round's (True when a side has one)
    slower: bool = True
    faster: bool = True



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


@dataclass(frozen=True)
class RoundPrior:
    """The round-to-round spread typical of a group of cells: `variance` of log round
    medians about their side's mean, worth `df` degrees of freedom."""

    variance: float
    df: float


#: degrees of freedom the typical spread is worth when moderating one cell's own
#: round variance (limma's d0, fixed rather than fitted: a prior worth four rounds'
#: evidence pulls a 2+2-round cell halfway to its framework's typical spread). Fitted
#: to two A/A pairs of quick runs (Smyth's moment estimate on the log variances, per
#: framework) it came out at 0.7-5.2: the cells' spreads differ that much, so a
#: larger d0 would trust the typical spread more than the data allow
PRIOR_DF = 4.0
#: cells with several rounds a side a group needs before its typical spread is used
PRIOR_MIN_CELLS = 8


def log_round_medians(samples: Sequence[float] | np.ndarray, round_sizes: Sequence[int] = (),
                      given: Sequence[float] = ()) -> np.ndarray:
    """Each round's median, logged: from the samples split by `round_sizes`, else the
    medians a merged run carries (`given`), else the pooled median (one round)."""
    parts = split_rounds(samples, round_sizes)
    if len(parts) > 1:
        medians = [float(np.median(x)) for x in parts]
    elif len(given) > 1:
        medians = [float(m) for m in given]
    else:
        x = np.asarray(samples, dtype=float)
        medians = [float(np.median(x))] if x.size else []
    arr = np.asarray(medians, dtype=float)
    return np.log(arr[np.isfinite(arr) & (arr > 0)])


def _own_variance(base: np.ndarray, current: np.ndarray) -> tuple[float, int]:
    """Pooled variance of the two sides' log round medians about their own means, with
    its degrees of freedom (a one-round side contributes none)."""
    ss = sum(float(((x - x.mean()) ** 2).sum()) for x in (base, current) if x.size > 1)
    df = sum(x.size - 1 for x in (base, current) if x.size > 1)
    return (ss / df if df else math.nan), df


def round_prior(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> RoundPrior | None:
    """The typical round spread of a group of cells (pairs of log round medians): the
    median of their own variances, scaled by the median of a chi-square over its
    degrees of freedom (a median variance of a few rounds sits below the mean). A cell
    counts when either side has several rounds (an old single-round baseline facing a
    run of rounds still shows that run's spread). None with fewer than
    `PRIOR_MIN_CELLS` such cells, or when their typical spread is zero (constant data
    cannot say how much processes move)."""
    from scipy.stats import chi2

    own = [_own_variance(b, c) for b, c in pairs if max(b.size, c.size) > 1]
    own = [(v, d) for v, d in own if d and math.isfinite(v)]
    if len(own) < PRIOR_MIN_CELLS:
        return None
    typical_df = float(np.median([d for _, d in own]))
    scale = float(chi2.ppf(0.5, typical_df) / typical_df)
    variance = float(np.median([v for v, _ in own])) / scale
    return RoundPrior(variance, PRIOR_DF) if variance > 0 else None


def rounds_error(base: np.ndarray, current: np.ndarray, prior: RoundPrior | None = None
                 ) -> tuple[float, float]:
    """(standard error of the mean log-ratio, its degrees of freedom) from two sides' log
    round medians: their pooled variance about each side's mean, moderated by `prior`
    (weights: the own and the prior's degrees of freedom). A one-round side counts as
    one process of the other side's spread. NaN when nothing estimates the spread."""
    variance, df = _own_variance(base, current)
    if prior is not None:
        own = variance * df if df else 0.0
        variance, df = (own + prior.variance * prior.df) / (df + prior.df), df + prior.df
    if not df or not math.isfinite(variance):
        return math.nan, 0.0
    return math.sqrt(variance * (1.0 / base.size + 1.0 / current.size)), float(df)


def rounds_test(base: np.ndarray, current: np.ndarray, confidence: float = CONFIDENCE,
                prior: RoundPrior | None = None) -> tuple[float, float, float]:
    """(low, high, p) for the ratio of two cells from their log round medians: the
    difference of side means over `rounds_error`, a t distribution with the own plus
    the prior's degrees of freedom. Needs one side of several rounds (else NaNs); a
    spread of exactly zero cannot be tested (p 1: identical rounds say nothing of how
    much a process moves)."""
    from scipy.stats import t as student

    nan = math.nan
    if base.size == 0 or current.size == 0 or max(base.size, current.size) < 2:
        return nan, nan, nan
    diff = float(current.mean() - base.mean())
    se, df = rounds_error(base, current, prior)
    if not math.isfinite(se):
        return nan, nan, 1.0
    if se == 0.0:
        r = math.exp(diff)
        return r, r, 1.0
    q = float(student.ppf(0.5 + confidence / 2.0, df))
    p = float(2.0 * student.sf(abs(diff) / se, df))
    return math.exp(diff - q * se), math.exp(diff + q * se), p


def detectable_ratio(base: np.ndarray, current: np.ndarray, alpha: float,
                     prior: RoundPrior | None = None) -> float:
    """The smallest slow-down (> 1) the rounds test calls significant at two-sided level
    `alpha` for these rounds and spread (the comparison's resolution for one cell);
    NaN where the rounds test does not apply."""
    from scipy.stats import t as student

    if base.size == 0 or current.size == 0 or max(base.size, current.size) < 2:
        return math.nan
    se, df = rounds_error(base, current, prior)
    if not (math.isfinite(se) and se > 0):
        return math.nan
    return math.exp(float(student.ppf(1.0 - alpha / 2.0, df)) * se)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: the family-wise error stays <= alpha when every
    adjusted p below alpha is called significant. NaNs stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not ok.size:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def verdict_of(ratio: float, low: float, high: float, p: float, slower: bool, faster: bool,
               factor: float = FACTOR, alpha: float = ALPHA,
               noise: float = NOISE_BAND) -> Verdict:
    """The rule: a regression when the ratio is beyond `factor`, p below `alpha`, the
    interval wholly above 1 + noise and every round slower; an improvement mirrored."""
    if ratio > factor and p < alpha and slower and low > 1.0 + noise:
        return Verdict.REGRESSION
    if ratio < 1.0 / factor and p < alpha and faster and high < 1.0 / (1.0 + noise):
        return Verdict.IMPROVEMENT
    return Verdict.UNCHANGED


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
    prior: RoundPrior | None = None,
) -> Change:
    """Ratio of medians, its interval, the p-value, and the verdict of one cell.

    Regression iff ratio > factor, p < alpha and the interval lies wholly above
    1 + noise; improvement iff ratio < 1/factor, p < alpha and the interval lies
    wholly below 1/(1 + noise); anything else is unchanged. When a side holds
    several rounds (worker processes: `*_sizes`, or merged runs: `*_rounds`, their
    medians) the interval and p come from `rounds_test` on the log round medians,
    moderated by `prior` when given (a comparison of many cells passes each group's
    `round_prior`); a single-round side facing a several-round one is taken as one
    process of that side's spread. Two single-round sides keep the sample bootstrap
    and the U test. When both sides hold several rounds a change must also show in
    every round: every current round's median beyond every baseline round's.
    The verdict here is for one cell alone; `compare_runs` re-judges a family of
    cells with Holm-adjusted p-values.
    """
    base = np.asarray(baseline, dtype=float)
    cur = np.asarray(current, dtype=float)
    if base.size == 0 or cur.size == 0:
        nan = float("nan")
        return Change(nan, nan, nan, nan, Verdict.ERROR)
    ratio = float(np.median(cur) / np.median(base))
    b_log = log_round_medians(base, base_sizes, base_rounds)
    c_log = log_round_medians(cur, current_sizes, current_rounds)
    if max(b_log.size, c_log.size) > 1:
        low, high, p = rounds_test(b_log, c_log, confidence, prior)
    else:
        low, high = bootstrap_ratio_ci(base, cur, confidence, seed=seed)
        p = mann_whitney_p(base, cur)
    several = b_log.size > 1 and c_log.size > 1
    slower = not several or bool(c_log.min() > b_log.max())
    faster = not several or bool(c_log.max() < b_log.min())
    verdict = verdict_of(ratio, low, high, p, slower, faster, factor, alpha, noise)
    return Change(ratio, low, high, p, verdict, slower, faster)
