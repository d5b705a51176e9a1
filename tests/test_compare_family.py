"""A comparison of many cells is one family (bench/results/stats.py, bench/regress/compare.py):
the worker process is the unit of replication (a t-test on log round medians, each cell's
spread moderated by its framework's typical one) and the p-values are Holm-adjusted over the
cells compared, so two runs of the same code compare as equal while a real slow-down of one
cell is still flagged. No framework needed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from bench.regress import compare
from bench.results.stats import (
    RoundPrior,
    Verdict,
    compare_samples,
    holm,
    log_round_medians,
    round_prior,
    rounds_test,
)


def _holm_by_definition(p):
    """Holm's adjusted p-values written out from the definition, one at a time."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_its_definition_and_keeps_nans_out_of_the_family():
    rng = np.random.default_rng(3)
    p = list(rng.uniform(0, 0.05, 40)) + [1e-6, 0.5, 1.0]
    assert holm(p) == pytest.approx(_holm_by_definition(p))
    with_nan = holm([0.01, math.nan, 0.02])
    assert math.isnan(with_nan[1])
    assert list(with_nan[[0, 2]]) == pytest.approx([0.02, 0.02])  # a family of two, not three
    assert holm([]).size == 0


def test_rounds_test_without_a_prior_is_the_pooled_t_test_on_log_round_medians():
    base = np.log([1.00, 1.04, 0.97])
    cur = np.log([1.30, 1.22, 1.35])
    low, high, p = rounds_test(base, cur, 0.95)
    ref = sp.ttest_ind(cur, base, equal_var=True)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    diff = cur.mean() - base.mean()
    half = sp.t.ppf(0.975, 4) * math.sqrt(((base.var(ddof=1) + cur.var(ddof=1)) / 2) * (2 / 3))
    assert (low, high) == pytest.approx((math.exp(diff - half), math.exp(diff + half)))


def test_a_prior_moderates_a_cell_whose_own_rounds_agree_by_luck():
    base, cur = np.log([1.000, 1.001]), np.log([1.250, 1.251])
    alone = rounds_test(base, cur)
    prior = RoundPrior(0.06 ** 2, 4.0)
    moderated = rounds_test(base, cur, prior=prior)
    assert alone[2] < 1e-4 and moderated[2] > alone[2]  # a typical spread of 6% is respected
    own = ((base - base.mean()) ** 2).sum() + ((cur - cur.mean()) ** 2).sum()
    variance = (own + 4.0 * 0.06 ** 2) / (2 + 4.0)
    t = (cur.mean() - base.mean()) / math.sqrt(variance)  # 1/2 + 1/2 rounds
    assert moderated[2] == pytest.approx(2 * sp.t.sf(abs(t), 6))


def test_round_prior_needs_enough_cells_and_is_their_typical_spread():
    rng = np.random.default_rng(0)
    pairs = [(np.log(1 + rng.normal(0, 0.05, 3)), np.log(1 + rng.normal(0, 0.05, 3)))
             for _ in range(200)]
    prior = round_prior(pairs)
    assert prior is not None and 0.04 < math.sqrt(prior.variance) < 0.06
    assert round_prior(pairs[:3]) is None
    assert round_prior([(np.log([1.0]), np.log([1.1]))] * 20) is None  # one round a side
    assert round_prior([(np.log([1.0, 1.0]), np.log([2.0, 2.0]))] * 20) is None  # no spread
    # an old single-round baseline facing rounds: the rounds' spread still counts
    one_side = round_prior([(np.log([1.0]), np.log([1.0, 1.1]))] * 20)
    assert one_side is not None and one_side.variance == pytest.approx(
        np.log(1.1) ** 2 / 2 / sp.chi2.ppf(0.5, 1))


def test_log_round_medians_from_sizes_then_given_medians_then_one_round():
    x = [1.0, 1.2, 1.1, 2.0, 2.2, 2.1]
    assert np.exp(log_round_medians(x, [3, 3])) == pytest.approx([1.1, 2.1])
    assert np.exp(log_round_medians(x, (), [1.5, 1.7])) == pytest.approx([1.5, 1.7])
    assert np.exp(log_round_medians(x)) == pytest.approx([1.6])  # the pooled median


def _run(levels: dict[str, list[float]], rng, n: int = 12, within: float = 0.01) -> pd.DataFrame:
    """A loaded run: each cell's rounds at the given levels, `n` samples a round."""
    rows = []
    for cell, rounds in levels.items():
        backend = cell.split("/")[0]
        samples = np.concatenate([lv * (1 + rng.normal(0, within, n)) for lv in rounds])
        rows.append({"cell": cell, "task": "mlp_regression", "backend": backend,
                     "variant": "v", "device": "cpu", "dtype": "float32", "phase": "step",
                     "median": float(np.median(samples)), "rounds": len(rounds),
                     "samples": samples, "round_sizes": [n] * len(rounds),
                     "round_medians": [float(np.median(samples[i * n:(i + 1) * n]))
                                       for i in range(len(rounds))], "error": ""})
    return pd.DataFrame(rows)


def _levels(rng, cells: int, rounds: int, spread: float) -> dict[str, list[float]]:
    """Process-level offsets with heavy tails (a t with 3 degrees of freedom), as the
    measured A/A rounds have: most processes within a few percent, some 20% away."""
    out = {}
    for i in range(cells):
        backend = ("numpy", "torch", "jax", "tensorflow")[i % 4]
        out[f"{backend}/cell{i}"] = list(np.exp(spread * rng.standard_t(3, rounds)))
    return out


def test_same_code_twice_compares_as_equal_and_a_real_slow_down_is_still_found():
    """276 cells, 3 rounds a side, the process level moving ~6% with heavy tails: twenty
    simulated A/A pairs flag nothing (the old rule, a bootstrap over three rounds that
    cannot see beyond them and no family, flagged a cell in the first measured pair);
    a 1.5x slow-down of one cell in every round is flagged among the 276."""
    rng = np.random.default_rng(21)
    flagged_per_pair = []
    for _ in range(20):
        a = _run(_levels(rng, 276, 3, 0.05), rng)
        b = _run(_levels(rng, 276, 3, 0.05), rng)
        cmp = compare.compare_runs(a, b)
        flagged_per_pair.append(cmp.count(Verdict.REGRESSION) + cmp.count(Verdict.IMPROVEMENT))
        assert compare.exit_code(cmp) == 0
    assert flagged_per_pair == [0] * 20
    # the per-cell test alone (no family) calls some of these cells changed
    raw = [compare_samples(a.samples[i], b.samples[i], alpha=0.05, factor=1.0,
                           base_sizes=a.round_sizes[i], current_sizes=b.round_sizes[i]).p_value
           for i in range(len(a))]
    assert sum(p < 0.05 for p in raw) > 0
    # one real 1.5x slow-down, every round of it, among the 276
    levels = _levels(rng, 276, 3, 0.05)
    levels["torch/cell1"] = [1.0, 1.04, 0.97]
    slow = dict(levels, **{"torch/cell1": [1.5, 1.45, 1.53]})
    cmp = compare.compare_runs(_run(levels, rng), _run(slow, rng))
    flagged = cmp.table[cmp.table["verdict"] == Verdict.REGRESSION.value]
    assert list(flagged["cell"]) == ["torch/cell1"]
    row = flagged.iloc[0]
    assert row["p_adjusted"] < 0.01 and row["p_adjusted"] == pytest.approx(276 * row["p_value"])
    assert compare.exit_code(cmp) == 1
    assert "after Holm's adjustment over the 276 cells compared" in compare.format_text(cmp)


def test_an_old_single_round_baseline_still_catches_a_slow_down_and_passes_noise():
    """A baseline written before rounds (one process a cell) against a run of 3 rounds:
    the run's spread moderates every cell, so a 1.5x slow-down is flagged among 60 cells
    and a run of the same code is not (without the prior no cell could reach Holm's
    threshold with one degree of freedom a side)."""
    rng = np.random.default_rng(5)
    levels = _levels(rng, 60, 3, 0.03)
    levels["torch/cell1"] = [1.0, 1.02, 0.99]
    base = _run({k: [v[0]] for k, v in _levels(rng, 60, 1, 0.03).items()} |
                {"torch/cell1": [1.0]}, rng)
    same = compare.compare_runs(base, _run(levels, rng))
    assert compare.exit_code(same) == 0
    slow = compare.compare_runs(base, _run(dict(levels, **{"torch/cell1": [1.5, 1.52, 1.49]}),
                                           rng))
    flagged = slow.table[slow.table["verdict"] == Verdict.REGRESSION.value]
    assert list(flagged["cell"]) == ["torch/cell1"]


def test_the_comparison_states_its_resolution():
    """The header says how large a slow-down this many cells and rounds can flag: fewer
    rounds, or more cells, need a larger one."""
    rng = np.random.default_rng(8)
    few = compare.compare_runs(_run(_levels(rng, 40, 2, 0.05), rng),
                               _run(_levels(rng, 40, 2, 0.05), rng))
    many = compare.compare_runs(_run(_levels(rng, 40, 8, 0.05), rng),
                                _run(_levels(rng, 40, 8, 0.05), rng))
    assert 1.2 <= many.detectable[0] < few.detectable[0] <= few.detectable[1]
    assert "resolution: with these rounds" in compare.format_text(few)
