"""`nnparity study` and `Program.hidden_state_grads`: probes against finite differences
and the reference, the study's invariants, and its report rebuilt from raw data."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace

import numpy as np
import pytest

import impls
from bench.agreement.check import normwise
from bench.agreement.finite_diff import compare, numerical_grads
from bench.agreement.tolerances import tolerance
from bench.cli import main as cli_main
from bench.study import jobs as study_jobs
from bench.study.config import SUCCESS_MSE, StudyConfig, setup_activation
from bench.study.report import FIGURES, write_report
from bench.study.run import LEARN_CSV, choose_backends, learn_runs, write_raw
from bench.study.summary import decay_slope, horizon, learn_verdict, resolved
from impls.numpy import model as ref_model
from tasks import get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params

CELLS = ("rnn", "lstm", "gru")
FRAMEWORKS = ("torch", "jax", "tensorflow")
# variants whose recurrent layers are fused kernels: no place for a probe
FUSED = {"torch": "native", "tensorflow": "keras"}


def _case(cell: str, **knobs):
    task = get_task("rnn_sequence")
    cfg = task.config("tiny", {"cell": cell, "seq_len": 7, **knobs})
    spec = task.model(cfg)
    data = task.data(cfg)
    return spec, init_params(spec, 3), data.x_train[:3], data.y_train[:3]


def _build(backend: str, spec, params, dtype: str, variant: str | None = None):
    be = impls.load(backend)
    return be.build(spec, params, variant=variant or be.variants[0], dtype=dtype, device="cpu",
                    optimizer=OptimizerSpec("adam", 1e-2))


@pytest.mark.parametrize("cell", CELLS)
def test_reference_state_grads_match_finite_differences_of_probes(cell):
    spec, params, x, y = _case(cell)  # two stacked layers: the lower one too
    _, analytic = ref_model.loss_and_state_grads(spec, params, x, y)
    probes = {k: np.zeros_like(v) for k, v in analytic.items()}
    assert ref_model.loss_probed(spec, params, x, y, probes) == pytest.approx(
        float(ref_model.loss(spec, params, x, y)), rel=1e-12)
    numeric = numerical_grads(lambda p: ref_model.loss_probed(spec, params, x, y, p), probes,
                              max_entries=None)
    tol = tolerance("finite_difference", "float64").normwise
    errors = compare(analytic, numeric)
    assert set(errors) == {"rnn0", "rnn1"}
    assert all(e < tol for e in errors.values()), errors


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("backend", ("numpy", *FRAMEWORKS))
def test_every_backend_probe_gradients_match_the_reference(backend, cell, dtype):
    if backend != "numpy":
        pytest.importorskip(backend)
    spec, params, x, y = _case(cell)
    _, ref = ref_model.loss_and_state_grads(spec, params, x, y)
    program = _build(backend, spec, params, dtype)
    got = program.hidden_state_grads(program.put(x), program.put(y))
    tol = tolerance("gradient", dtype)
    assert set(got) == set(ref)
    for name in ref:
        assert got[name].shape == ref[name].shape
        assert got[name].dtype == np.dtype(dtype)
        assert normwise(got[name], ref[name]) <= tol.normwise, name


@pytest.mark.parametrize("backend", sorted(FUSED))
def test_fused_variants_declare_probes_unsupported(backend):
    pytest.importorskip(backend)
    spec, params, x, y = _case("lstm", layers=1)
    program = _build(backend, spec, params, "float64", FUSED[backend])
    with pytest.raises(impls.BackendError, match="not supported"):
        program.hidden_state_grads(program.put(x), program.put(y))


def test_a_model_without_recurrent_layer_has_no_state_grads():
    task = get_task("mlp_regression")
    spec = task.model(task.config("tiny"))
    program = _build("numpy", spec, init_params(spec, 0), "float64")
    with pytest.raises(impls.BackendError, match="recurrent"):
        program.hidden_state_grads(np.zeros((2, 10)), np.zeros((2, 1)))


@pytest.mark.parametrize("backend", ("numpy", *FRAMEWORKS))
def test_zero_recurrent_weights_cut_the_rnn_gradient_but_not_the_lstm_cell_state(backend):
    if backend != "numpy":
        pytest.importorskip(backend)
    grads = {}
    for cell in ("rnn", "lstm"):
        spec, params, x, y = _case(cell, layers=1)
        params["rnn0.w_hh"] = np.zeros_like(params["rnn0.w_hh"])
        program = _build(backend, spec, params, "float64")
        grads[cell] = program.hidden_state_grads(program.put(x), program.put(y))["rnn0"]
    # h_t reaches the loss only through h_{t+1} = tanh(x W + b + h_t W_hh): not at all
    assert np.all(grads["rnn"][:, :-1] == 0.0)
    assert np.all(np.abs(grads["rnn"][:, -1]).sum(axis=-1) > 0)
    # an LSTM's state (h_t, c_t) still reaches it, through c_{t+1} = f c_t + i g
    hidden = spec.layers[0].hidden
    assert grads["lstm"].shape[-1] == 2 * hidden
    assert np.all(grads["lstm"][:, :-1, :hidden] == 0.0)  # its h_t alone is cut off too
    assert np.all(np.abs(grads["lstm"][:, :, hidden:]).sum(axis=-1) > 0)


def test_decay_slope_and_horizon_of_a_geometric_curve():
    curve = 10.0 ** (-0.5 * np.arange(20)[::-1])  # falls a factor sqrt(10) per step back
    assert decay_slope(curve) == pytest.approx(-0.5)
    assert horizon(curve) == 7  # 10^-3.5 < 1e-3 first at 7 steps back
    assert horizon(np.ones(5)) is None


def test_quick_study_writes_raw_data_and_the_report_rebuilds_from_it(tmp_path, capsys):
    out = tmp_path / "study"
    assert cli_main(["study", "--preset", "quick", "--backends", "numpy", "--jobs", "1",
                     "--quiet", "--out", str(out)]) == 0
    data = json.loads((out / "study.json").read_text())
    cfg = data["config"]
    assert {r["cell"] for r in data["time"]} == set(CELLS)
    for r in data["time"]:
        for curves in r["curves"].values():
            assert all(len(c) == r["length"] and min(c) > 0 for c in curves.values())
    runs = learn_runs(StudyConfig.from_dict(cfg))
    assert len(data["learn"]) == len(runs) * len(cfg["seeds"])
    for r in data["learn"]:  # a curve from step 0 to the budget, every eval_every steps
        assert r["steps"] == list(range(0, cfg["learn_steps"] + 1, cfg["eval_every"]))
        assert r["test_mse"] == r["mse"][-1]
    assert len(data["depth"]) == len(cfg["activations"]) * len(cfg["depths"]) * len(cfg["seeds"])
    for r in data["time"]:  # an LSTM's state (h, c) and its h half, never larger
        if r["cell"] == "lstm":
            for layers in r["curves"].values():
                assert set(layers) == {"rnn0", "rnn0 h"}
                assert np.all(np.array(layers["rnn0 h"]) <= np.array(layers["rnn0"]))
    for r in data["depth"]:
        assert len(r["init"]["grad_norms"]) == r["depth"] + 1
        for state in ("init", "trained"):
            bound = 0.25 if r["activation"] == "sigmoid" else 1.0
            assert all(0 < u["mean_deriv"] <= bound for u in r[state]["units"])
    # the init rows' R^2 is measured at init, not the trained value repeated
    assert all(r["init_r2"] != r["test_r2"] for r in data["depth"])
    report = (out / "REPORT.md").read_text()
    for name in ("REPORT.md", "summary.json", *FIGURES):
        (out / name).unlink()
    assert cli_main(["study", "--report", str(out)]) == 0
    assert (out / "REPORT.md").read_text() == report
    assert all((out / name).stat().st_size > 0 for name in FIGURES)
    summary = json.loads((out / "summary.json").read_text())
    assert {r["setup"] for r in summary["learn"]} == set(cfg["setups"])
    _check_learn_statements(report, (out / "learn.csv").read_text())
    # the identity setup is the IRNN (ReLU), and the report no longer says otherwise
    assert "`rnn-identity` = rnn (identity init, relu)" in report
    assert "`rnn` = rnn (uniform init, tanh)" in report
    assert "keeps tanh" not in report and "tanh, not their ReLU" not in report


def test_study_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli_main(["study", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown study preset" in capsys.readouterr().err
    assert cli_main(["study", "--report", str(tmp_path)]) == 2


# -- the report's "learns within B steps at T" statements against learn.csv ------------------

STATEMENT = re.compile(
    r"^- `(?P<setup>[\w-]+)` (?P<phrase>learns|does not learn|is not resolved \(some seeds only\))"
    r" within (?P<budget>\d+) steps at T=(?P<length>\d+) on (?P<backend>\w+): (?P<wins>\d+) of "
    r"(?P<n>\d+) seeds \((?P<seeds>[\d, ]+)\) reach held-out MSE < (?P<thr>[\d.]+) at step "
    r"(?P=budget) ", re.M)


def _check_learn_statements(report: str, learn_csv: str) -> list[str]:
    """Every statement follows from learn.csv under the rule the report states; returns
    the verdicts found."""
    rows = list(csv.DictReader(io.StringIO(learn_csv)))
    found = list(STATEMENT.finditer(report))
    assert found, "no learns-within statement in the report"
    assert report.count("within") >= len(found)
    verdicts = []
    for m in found:
        assert float(m["thr"]) == SUCCESS_MSE
        seeds = [int(k) for k in m["seeds"].split(", ")]
        mses = {}
        for r in rows:
            if (r["setup"], r["length"], r["backend"], r["step"]) == (
                    m["setup"], m["length"], m["backend"], m["budget"]):
                mses[int(r["seed"])] = float(r["test_mse"])
        assert sorted(mses) == seeds, (m.group(0), mses)
        wins = sum(v < SUCCESS_MSE for v in mses.values())
        assert (wins, len(seeds)) == (int(m["wins"]), int(m["n"])), m.group(0)
        verdict = learn_verdict(list(mses.values()))
        assert m["phrase"].startswith({"learns": "learns", "does not learn": "does not",
                                       "not resolved": "is not resolved"}[verdict]), m.group(0)
        verdicts.append(verdict)
    return verdicts


def test_learn_statements_follow_from_learn_csv_for_every_verdict(tmp_path):
    """A quick study's curves edited so that one run learns, one does not and one is split
    across seeds: the rebuilt report says so, and says nothing learn.csv does not hold."""
    out = tmp_path / "study"
    assert cli_main(["study", "--preset", "quick", "--backends", "numpy", "--jobs", "1",
                     "--quiet", "--out", str(out)]) == 0
    data = json.loads((out / "study.json").read_text())
    for r in data["learn"]:
        if r["setup"] == "lstm":  # every seed learns
            r["mse"] = [m if s == 0 else 0.001 for s, m in zip(r["steps"], r["mse"], strict=True)]
        elif r["setup"] == "gru" and r["seed"] == 0:  # one seed of two
            r["mse"] = [m if s == 0 else 0.002 for s, m in zip(r["steps"], r["mse"], strict=True)]
        r["test_mse"] = r["mse"][-1]
    write_raw(out, data)
    write_report(out)
    report = (out / "REPORT.md").read_text()
    verdicts = _check_learn_statements(report, (out / LEARN_CSV).read_text())
    assert set(verdicts) == {"learns", "does not learn", "not resolved"}
    assert "- `lstm` learns within 10 steps at T=6 on numpy: 2 of 2 seeds (0, 1)" in report
    # and a statement that contradicts the CSV is caught
    with pytest.raises(AssertionError):
        _check_learn_statements(report.replace("`lstm` learns", "`lstm` does not learn"),
                                (out / LEARN_CSV).read_text())


def test_a_difference_is_claimed_only_where_the_seed_intervals_are_apart():
    assert resolved([0.1, 0.2], [0.25, 0.3]) and resolved([0.25, 0.3], [0.1, 0.2])
    assert not resolved([0.1, 0.2], [0.2, 0.3])  # touching is overlapping
    assert not resolved([0.1, 0.5], [0.2, 0.3])


def test_the_training_backend_pays_its_start_up_once_per_job():
    cfg = StudyConfig(setups=("lstm",), learn_steps=2000)
    fast_start = {"cell": "lstm", "backend": "numpy", "warmup_seconds": 0.1,
                  "seconds_per_step": 0.004}  # 8.1 s a job
    fast_step = {"cell": "lstm", "backend": "jax", "warmup_seconds": 9.0,
                 "seconds_per_step": 0.001}  # 11 s a job
    assert choose_backends(cfg, [fast_start, fast_step], "torch") == {"lstm": "numpy"}
    assert choose_backends(replace(cfg, learn_steps=4000), [fast_start, fast_step],
                           "torch") == {"lstm": "jax"}
    assert choose_backends(cfg, [], "torch") == {"lstm": "torch"}


def test_learn_verdict_rule():
    assert learn_verdict([0.001, 0.01]) == "learns"
    assert learn_verdict([0.001, SUCCESS_MSE]) == "not resolved"  # not below: a failure
    assert learn_verdict([0.1, 0.2]) == "does not learn"


# -- initialisation as an axis ------------------------------------------------------------------

def test_the_canonical_init_is_unchanged_and_the_variants_change_only_their_part():
    spec, *_ = _case("lstm", layers=2)
    base = init_params(spec, 3)
    assert all(np.array_equal(base[k], v) for k, v in init_params(spec, 3, "uniform", 1.0).items())
    fb0 = init_params(spec, 3, forget_bias=0.0)
    h = spec.layers[0].hidden
    for k in base:
        if k.endswith("b_ih"):
            assert np.allclose(base[k][h:2 * h] - fb0[k][h:2 * h], 1.0)
            assert np.array_equal(np.delete(base[k], np.s_[h:2 * h]),
                                  np.delete(fb0[k], np.s_[h:2 * h]))
        else:
            assert np.array_equal(base[k], fb0[k]), k
    orth, ident = init_params(spec, 3, "orthogonal"), init_params(spec, 3, "identity")
    for name in ("rnn0", "rnn1"):
        w = orth[f"{name}.w_hh"]
        for i in range(0, w.shape[1], h):
            assert np.allclose(w[:, i:i + h].T @ w[:, i:i + h], np.eye(h), atol=1e-12)
        assert np.array_equal(ident[f"{name}.w_hh"], np.tile(np.eye(h), 4))
        assert np.all(ident[f"{name}.b_hh"] == 0)
        assert np.all(ident[f"{name}.b_ih"][h:2 * h] == 1.0)
        assert not np.array_equal(orth[f"{name}.w_hh"], init_params(spec, 4, "orthogonal")[
            f"{name}.w_hh"])  # seeded
    for k in base:
        if ".w_hh" not in k:
            assert np.array_equal(base[k], orth[k]), k
    with pytest.raises(Exception, match="recurrent_init"):
        init_params(spec, 3, "glorot")


@pytest.mark.parametrize(("setup", "activation"), [
    ("rnn", "tanh"), ("rnn-orthogonal", "tanh"), ("rnn-identity", "relu"), ("lstm", "tanh"),
    ("gru-identity", "tanh")])
def test_the_identity_setup_is_the_irnn_and_the_others_stay_tanh(setup, activation):
    """rnn-identity: W_hh = I, recurrent biases 0 and ReLU (Le et al. 2015); gated cells
    keep their gates, the other vanilla setups tanh."""
    assert setup_activation(setup) == activation
    _, spec, _ = study_jobs.rnn_task(StudyConfig(hidden=4), setup, 6, 0)
    assert {layer.activation for layer in spec.layers[:-1]} == {activation}
    if setup == "rnn-identity":
        params = study_jobs.rnn_init(setup, spec, 0)
        assert np.array_equal(params["rnn0.w_hh"], np.eye(4))
        assert not params["rnn0.b_ih"].any() and not params["rnn0.b_hh"].any()


def test_the_vanilla_rnn_at_init_ratios_are_todays():
    """The published study's numbers at seed 0 (hidden 32, 64 held-out samples): the
    canonical uniform init must not move them."""
    cfg = StudyConfig()
    expected = {50: 3.4e-13, 100: 6.2e-26}
    for length, ratio in expected.items():
        _, spec, _ = study_jobs.rnn_task(cfg, "rnn", length, 0)
        r = study_jobs.time_grads(cfg, "numpy", "float64", "rnn", length, 0,
                                  {"init": study_jobs.rnn_init("rnn", spec, 0)})
        curve = r["curves"]["init"]["rnn0"]
        assert float(f"{curve[0] / curve[-1]:.1e}") == ratio


@pytest.mark.parametrize("setup", ["rnn-orthogonal", "rnn-identity", "lstm-fb0"])
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_every_backend_starts_each_init_identically(backend, setup):
    """The study's float64 dL/dh_t curves of each init on a framework within 1e-12 of the
    reference, and the spectral radius the study prints."""
    pytest.importorskip(backend)
    cfg = StudyConfig(hidden=6, eval_batch=4, n_samples=40)
    _, spec, _ = study_jobs.rnn_task(cfg, setup, 9, 1)
    states = {"init": study_jobs.rnn_init(setup, spec, 1)}
    ref = study_jobs.time_grads(cfg, "numpy", "float64", setup, 9, 1, states)
    got = study_jobs.time_grads(cfg, backend, "float64", setup, 9, 1, states)
    for layer, curve in ref["curves"]["init"].items():
        rel = np.abs(np.array(got["curves"]["init"][layer]) - curve) / np.abs(curve)
        assert rel.max() < 1e-12, (layer, rel.max())
    if setup == "rnn-identity":
        assert study_jobs.spectral_radius(setup, states["init"]) == pytest.approx(1.0)


def test_exact_zero_gradients_agree_and_are_never_compared_in_orders():
    from bench.study import summary

    # a reference that is exactly 0 where the backend is exactly 0 agrees; a nonzero
    # value against an exact 0 is an infinite difference, never a silent NaN
    assert summary._rel(np.array([0.0, 2.0]), np.array([0.0, 2.0])) == 0.0
    assert summary._rel(np.array([1e-30, 2.0]), np.array([0.0, 2.0])) == float("inf")
    assert summary._rel(np.array([np.nan, 2.0]), np.array([1.0, 2.0])) == float("inf")
    # a setup whose gradient at step 1 is exactly 0 in some seed is not compared in orders
    curve_zero = [0.0, 1e-3, 1.0]
    curve_ok = [1e-5, 1e-3, 1.0]
    rows = [
        {"setup": "rnn-identity", "length": 3, "state": "trained", "layer": "rnn0",
         "seeds": [0, 1], "log10_first_last_by_seed": [-307.6, -5.0],
         "log10_first_last_band": [-307.6, -5.0], "zero_seeds": 1},
        {"setup": "rnn", "length": 3, "state": "trained", "layer": "rnn0",
         "seeds": [0, 1], "log10_first_last_by_seed": [-5.0, -5.0],
         "log10_first_last_band": [-5.0, -5.0], "zero_seeds": 0},
    ]
    comps = [c for c in summary.time_comparisons(rows, "rnn0")
             if c["setup"] == "rnn-identity" and c["reference"] == "rnn"]
    assert comps and comps[0]["zero_seeds"] == 1
    from bench.study import report

    line = report._comparison_lines(comps, "log10 ratio", ".1f")[0]
    assert "not comparable" in line and "orders" not in line
    assert curve_zero[0] <= summary.TINY < curve_ok[0]
