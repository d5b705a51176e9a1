"""`nnparity study` and `Program.hidden_state_grads`: probes against finite differences
and the reference, the study's invariants, and its report rebuilt from raw data."""

from __future__ import annotations

import json

import numpy as np
import pytest

import impls
from bench.agreement.check import normwise
from bench.agreement.finite_diff import compare, numerical_grads
from bench.agreement.tolerances import tolerance
from bench.cli import main as cli_main
from bench.study.summary import decay_slope, horizon
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
    assert len(data["learn"]) == len(CELLS) * len(cfg["lengths"]) * len(cfg["seeds"])
    assert len(data["depth"]) == len(cfg["activations"]) * len(cfg["depths"]) * len(cfg["seeds"])
    for r in data["depth"]:
        assert len(r["init"]["grad_norms"]) == r["depth"] + 1
    report = (out / "REPORT.md").read_text()
    for name in ("REPORT.md", "summary.json", "time_norms.png", "depth_ratio.png"):
        (out / name).unlink()
    assert cli_main(["study", "--report", str(out)]) == 0
    assert (out / "REPORT.md").read_text() == report
    assert (out / "time_norms.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["cell"] for r in summary["learn"]} == set(CELLS)


def test_study_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli_main(["study", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown study preset" in capsys.readouterr().err
    assert cli_main(["study", "--report", str(tmp_path)]) == 2
