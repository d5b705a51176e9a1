"""The vanilla cell's ReLU activation (`Recurrent.activation`, the IRNN of Le et al. 2015).

The NumPy reference against its definition and central finite differences
(parameters, input, and every hidden state's gradient); every backend and
variant that builds the model against the reference in float64 and float32
(loss, output, every gradient, and dL/dh_t where the variant takes probes);
the spec refusing ReLU for gated cells; the knob on the command line. The
models are checked to cross ReLU's kink (some pre-activations negative, some
positive), so a backward that ignored the mask would fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PRESET, failures

import impls
from bench.agreement.check import gradient_rows, normwise
from bench.agreement.finite_diff import INPUT, check_model, compare, numerical_grads
from bench.agreement.tolerances import tolerance
from bench.cli import main as cli_main
from impls.numpy import model as ref_model
from impls.numpy import recurrent
from tasks import get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params
from tasks.spec import ModelSpec, Recurrent, SpecError

RELU = {"cell": "rnn", "activation": "relu"}
BACKENDS = ("torch", "jax", "tensorflow")


def _naive_relu_rnn(x, w_ih, w_hh, b_ih, b_hh):
    """h_t = max(0, x_t W_ih + b_ih + h_{t-1} W_hh + b_hh), one sample at a time."""
    n, t_len, _ = x.shape
    out = np.zeros((n, t_len, w_hh.shape[0]))
    for s in range(n):
        h = np.zeros(w_hh.shape[0])
        for t in range(t_len):
            h = np.maximum(0.0, x[s, t] @ w_ih + b_ih + h @ w_hh + b_hh)
            out[s, t] = h
    return out


def _weights(spec, seed):
    p = init_params(spec, seed)
    return p, [p[f"r.{k}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]


def test_relu_forward_matches_definition_and_crosses_the_kink():
    spec = ModelSpec((6, 3), (Recurrent("r", "rnn", 4, True, "relu"),), "mse")
    _, w = _weights(spec, 3)
    x = np.random.default_rng(2).normal(size=(2, 6, 3))
    seq, _ = recurrent.recurrent_forward(x, *w, "rnn", True, "relu")
    last, _ = recurrent.recurrent_forward(x, *w, "rnn", False, "relu")
    expected = _naive_relu_rnn(x, *w)
    np.testing.assert_allclose(seq, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last, expected[:, -1], rtol=1e-12, atol=1e-12)
    assert 0 < np.count_nonzero(seq == 0.0) < seq.size  # both pieces of ReLU are used
    tanh, _ = recurrent.recurrent_forward(x, *w, "rnn", True)  # the default is tanh
    assert np.all(np.abs(tanh) < 1) and tanh.min() < 0  # tanh's range, not ReLU's
    assert not np.allclose(tanh, seq)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_relu_gradients_match_finite_differences(return_sequences):
    spec = ModelSpec((5, 3), (Recurrent("r", "rnn", 4, return_sequences, "relu"),), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 3))
    y = rng.normal(size=(3, *spec.output_shape))
    params = init_params(spec, 0)
    out, cache = recurrent.recurrent_forward(x, *(params[f"r.{k}"] for k in (
        "w_ih", "w_hh", "b_ih", "b_hh")), "rnn", True, "relu")
    assert 0 < np.count_nonzero(out == 0.0) < out.size
    errs = check_model(spec, params, x, y, wrt_input=True)
    assert set(errs) == set(spec.param_shapes()) | {INPUT}
    assert max(errs.values()) <= 1e-6, errs


def _case(**knobs):
    task = get_task("rnn_sequence")
    cfg = task.config(PRESET, {**RELU, "seq_len": 7, **knobs})
    spec = task.model(cfg)
    data = task.data(cfg)
    return spec, init_params(spec, 3), data.x_train[:3], data.y_train[:3]


def test_relu_state_grads_match_finite_differences_of_probes():
    spec, params, x, y = _case()  # two stacked layers
    assert all(layer.activation == "relu" for layer in spec.layers[:2])
    _, analytic = ref_model.loss_and_state_grads(spec, params, x, y)
    probes = {k: np.zeros_like(v) for k, v in analytic.items()}
    numeric = numerical_grads(lambda p: ref_model.loss_probed(spec, params, x, y, p), probes,
                              max_entries=None)
    errors = compare(analytic, numeric)
    assert set(errors) == {"rnn0", "rnn1"}
    tol = tolerance("finite_difference", "float64").normwise
    assert all(e < tol for e in errors.values()), errors


def test_the_knob_changes_the_model_and_the_default_stays_tanh():
    task = get_task("rnn_sequence")
    default = task.model(task.config(PRESET, {"cell": "rnn"}))
    relu = task.model(task.config(PRESET, RELU))
    assert [layer.activation for layer in default.layers[:2]] == ["tanh", "tanh"]
    assert [layer.activation for layer in relu.layers[:2]] == ["relu", "relu"]
    params = init_params(default, 0)
    x = task.data(task.config(PRESET, RELU)).x_train[:4]
    assert not np.allclose(ref_model.forward(default, params, x),
                           ref_model.forward(relu, params, x))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_relu_is_for_the_vanilla_cell_only(cell):
    with pytest.raises(SpecError, match="cell 'rnn' only"):
        Recurrent("r", cell, 4, activation="relu")
    task = get_task("rnn_sequence")
    with pytest.raises(SpecError, match="cell 'rnn' only"):
        task.model(task.config(PRESET, {"cell": cell, "activation": "relu"}))


def test_an_unknown_recurrent_activation_is_a_spec_error():
    with pytest.raises(SpecError, match="unknown recurrent activation 'sigmoid'"):
        Recurrent("r", "rnn", 4, activation="sigmoid")


def _variants(backend_name):
    pytest.importorskip(backend_name)
    backend = impls.load(backend_name)
    task = get_task("rnn_sequence")
    spec = task.model(task.config(PRESET, RELU))
    return [v for v in backend.variants if backend.supports(spec, v)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_variant_agrees_with_the_reference(backend, dtype):
    variants = _variants(backend)
    assert variants
    bad = []
    for variant in variants:
        if variant == "compile":  # tens of seconds per graph; held to tanh elsewhere
            continue
        rows = gradient_rows("rnn_sequence", PRESET, RELU, backend, variant, dtype, "cpu")
        assert len(rows) >= 4
        bad += [f"{variant}: {f}" for f in failures(rows)]
    assert not bad, bad


@pytest.mark.parametrize("backend", BACKENDS)
def test_probe_gradients_match_the_reference(backend):
    pytest.importorskip(backend)
    spec, params, x, y = _case()
    _, ref = ref_model.loss_and_state_grads(spec, params, x, y)
    be = impls.load(backend)
    program = be.build(spec, params, variant=be.variants[0], dtype="float64", device="cpu",
                       optimizer=OptimizerSpec("adam", 1e-2))
    got = program.hidden_state_grads(program.put(x), program.put(y))
    assert set(got) == set(ref)
    tol = tolerance("gradient", "float64").normwise
    for name in ref:
        assert normwise(got[name], ref[name]) <= tol, name


def test_gradcheck_with_the_knob_passes_and_a_gated_relu_is_bad_input(capsys):
    pytest.importorskip("torch")
    assert cli_main(["gradcheck", "--task", "rnn_sequence", "--preset", "tiny",
                     "--set", "cell=rnn", "--set", "activation=relu", "--backends", "torch",
                     "--variants", "eager,native"]) == 0
    capsys.readouterr()
    assert cli_main(["gradcheck", "--task", "rnn_sequence", "--preset", "tiny",
                     "--set", "cell=lstm", "--set", "activation=relu", "--backends", "torch",
                     "--variants", "eager"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cell 'rnn' only" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_bare_timing_scripts_build_the_relu_cell(backend):
    pytest.importorskip(backend)
    from bench.timing.bare_scripts import BARE

    task = get_task("rnn_sequence")
    cfg = task.config(PRESET, RELU)
    x, y = task.data(cfg).batch(0, cfg.batch_size)
    loss = BARE[backend](task.model(cfg), x, np.asarray(y))()
    value = loss[0] if isinstance(loss, tuple) else loss
    assert np.isfinite(float(value.item() if hasattr(value, "item") else value))
