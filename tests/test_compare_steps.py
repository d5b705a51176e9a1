"""The steps of `compare_runs` on their own (bench/regress/compare.py): judging one cell,
normalising two machines' samples by their GEMM rates, and the warning for cells
that could not be normalised. No framework needed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from test_compare import CELLS, noisy, write_run

from bench.regress import compare
from bench.results.read import load_run
from bench.results.stats import Verdict


def _side(samples: list[float], backend: str = "torch", error: str = "") -> pd.Series:
    data = np.asarray(samples, dtype=float)
    return pd.Series({"task": "mlp_regression", "backend": backend, "variant": "eager",
                      "device": "cpu", "dtype": "float32", "phase": "step",
                      "median": float(np.median(data)) if data.size else math.nan,
                      "rounds": data.size, "samples": data, "error": error})


RULE = dict(factor=1.2, alpha=0.01, confidence=0.95, noise=0.02)


def test_samples_are_scaled_by_each_machines_own_gemm_rate():
    b, c = _side([1.0, 2.0]), _side([3.0, 4.0])
    rates = ({("torch", "cpu"): 10.0}, {("", "cpu"): 100.0})  # the second by its fallback
    assert compare._normalised(b, c, rates) == (10.0, 100.0, True)
    assert compare._normalised(b, c, None) == (1.0, 1.0, True)  # one machine: as timed
    assert compare._normalised(b, c, ({}, {("", "cpu"): 100.0})) == (1.0, 1.0, False)


def test_a_twice_as_fast_machine_doing_the_same_work_is_unchanged_after_normalising():
    base, current = _side(noisy(0.02, seed=1)), _side(noisy(0.01, seed=2))
    row = compare._judge("x", base, current, ({("", ""): 100.0}, {("", ""): 200.0}), **RULE)[0]
    assert row["verdict"] == Verdict.UNCHANGED.value and row["note"] == ""
    assert abs(row["ratio"] - 1.0) < 0.05
    raw = compare._judge("x", base, current, None, **RULE)[0]
    assert raw["verdict"] == Verdict.IMPROVEMENT.value and raw["ratio"] < 0.6


def test_a_cell_one_run_lacks_is_new_or_missing_and_an_empty_side_names_its_error():
    side = _side(noisy(0.01))
    assert compare._judge("x", None, side, None, **RULE)[0]["verdict"] == Verdict.NEW.value
    gone = compare._judge("x", side, None, None, **RULE)[0]
    assert gone["verdict"] == Verdict.MISSING.value and gone["current_rounds"] == 0
    assert math.isnan(gone["current_median_s"]) and gone["base_rounds"] == 15
    err = compare._judge("x", side, _side([], error="worker exited"), None, **RULE)[0]
    assert err["verdict"] == Verdict.ERROR.value
    assert err["note"] == "no samples in current: worker exited"


def test_cells_without_a_calibration_are_counted_in_a_warning(tmp_path):
    cells = {c: noisy(0.01, seed=i) for i, c in enumerate(CELLS)}
    base = load_run(write_run(tmp_path / "a", cells, fingerprint="machine-a"))
    current = load_run(write_run(tmp_path / "b", cells, fingerprint="machine-b"))
    uncalibrated = current[current["phase"] != "calibration"].copy()
    uncalibrated.attrs = current.attrs
    cmp = compare.compare_runs(base, uncalibrated)
    assert cmp.normalised
    assert (cmp.table["note"] == "not normalised: no calibration cell").sum() == len(CELLS)
    assert f"{len(CELLS)} cell(s) could not be normalised (no calibration cell)" in cmp.warnings
    assert not any("could not be normalised" in w for w in
                   compare.compare_runs(base, current).warnings)
