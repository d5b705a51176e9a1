"""The variant-gap rule (bench/report/gaps.py): within one framework and cell, a variant
more than 1.5x slower than the fastest carries a measured cause, or the report marks it
unexplained and counts it in its headline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_compare import write_run

from bench.report import gaps as G
from bench.report.markdown import gaps_headline, gaps_table, render, tidy
from bench.results.read import load_run


def _samples(median: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(median * (1.0 + 0.01 * rng.standard_normal(30)))


LSTM = "rnn_sequence[cell=lstm]/torch/{}/cpu/float32/bs64/backward"
MLP = "mlp_regression/torch/{}/cpu/float32/bs64/step"


def _run(tmp_path: Path, cells: dict[str, float]):
    data = {cell: _samples(m, seed=i) for i, (cell, m) in enumerate(cells.items())}
    return tidy(load_run(write_run(tmp_path / "run", data)))


def test_a_gap_without_a_measured_cause_is_marked_and_counted_at_the_top(tmp_path):
    df = _run(tmp_path, {LSTM.format("native"): 0.010, LSTM.format("eager"): 0.030,
                         MLP.format("eager"): 0.001, MLP.format("compile"): 0.0025,
                         MLP.format("nn"): 0.0012})  # 1.2x: below the rule
    gaps = G.variant_gaps(df)
    assert sorted(zip(gaps["backend"], gaps["variant"], gaps["fastest"], strict=True)) == [
        ("torch", "compile", "eager"), ("torch", "eager", "native")]
    by_variant = gaps.set_index("variant")
    assert 2.9 < by_variant.loc["eager", "ratio"] < 3.1
    assert "fused recurrent kernel" in by_variant.loc["eager", "cause"]  # a measured cause
    lost = G.unexplained(gaps)
    assert list(lost["variant"]) == ["compile"]  # the MLP's compile gap has none
    table = gaps_table(df)
    assert table.count("**unexplained**") == 1 and "compile vs eager" in table
    assert gaps_headline(df) and "1 of 2 variant gaps" in gaps_headline(df)[0]
    assert "1 of 2 variant gaps" in render(df, [])


def test_gaps_within_noise_or_below_the_factor_are_not_gaps(tmp_path):
    df = _run(tmp_path, {MLP.format("eager"): 0.001, MLP.format("nn"): 0.00149})
    assert G.variant_gaps(df).empty and gaps_headline(df) == []
    assert "No variant is more than 1.5x slower" in gaps_table(df)


def test_every_known_cause_names_real_backends_variants_tasks_and_phases():
    import impls
    from bench.results.schema import STEADY_PHASES
    from tasks import TASKS

    for cause in G.KNOWN_CAUSES:
        assert cause.backend in impls.BACKENDS and cause.text and cause.source
        if not impls.is_installed(cause.backend):
            continue
        offered = impls.load(cause.backend).variants
        assert set(cause.variants) <= set(offered), (cause.backend, cause.variants, offered)
        assert set(cause.phases) <= set(STEADY_PHASES)
        # a task name, with a pattern of its knobs after it ("[[]" is fnmatch's "[")
        assert cause.config.split("[")[0].rstrip("*") in TASKS


def test_a_cause_for_one_knob_value_covers_that_config_only():
    tanh = [c for c in G.KNOWN_CAUSES if c.backend == "torch" and "activation=tanh" in c.config]
    assert tanh, "the torch.compile tanh cause is gone"
    cause = tanh[0]
    assert cause.covers("torch", "compile", "mlp_regression[activation=tanh]", "forward")
    assert cause.covers("torch", "compile", "mlp_regression[activation=tanh,depth=4]", "forward")
    assert not cause.covers("torch", "compile", "mlp_regression[activation=relu]", "forward")
    assert not cause.covers("torch", "compile", "mlp_regression", "forward")
    assert not cause.covers("torch", "compile", "mlp_regression[activation=tanh]", "step")
