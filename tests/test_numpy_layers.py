"""Each NumPy reference layer alone: forward against a naive definition, and the
hand-written backward (parameters and input) against central finite differences
in float64. Needs only NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from bench.agreement.finite_diff import INPUT, check_model
from impls.numpy import layers, model, recurrent
from impls.numpy.layers import sigmoid
from tasks.params import init_params
from tasks.spec import Conv2D, Dense, Flatten, MaxPool2D, ModelSpec, Recurrent

TOL = 1e-6  # normwise relative error; float64 central differences reach ~1e-9


def _check(spec: ModelSpec, n: int = 3, seed: int = 0) -> float:
    """Finite-difference check of every parameter and the input; returns the worst error."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *spec.input_shape))
    if spec.loss == "mse":
        y = rng.normal(size=(n, *spec.output_shape))
    else:
        y = rng.integers(0, spec.output_shape[0], size=n)
    errs = check_model(spec, init_params(spec, seed), x, y, wrt_input=True)
    worst = max(errs.values())
    print(f"worst normwise error {worst:.2e}: {errs}")
    assert INPUT in errs
    assert worst <= TOL, errs
    return worst


# ------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_dense_gradients(activation: str) -> None:
    _check(ModelSpec((4,), (Dense("d", 3, activation),), "mse"))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "activation"),
    [
        (3, 1, "valid", "tanh"),
        (3, 1, "same", "relu"),
        (5, 1, "same", "sigmoid"),
        (3, 2, "valid", "identity"),
        (2, 2, "valid", "tanh"),
        (2, 3, "valid", "tanh"),
    ],
)
def test_conv2d_gradients(kernel: int, stride: int, padding: str, activation: str) -> None:
    conv = Conv2D("c", 3, kernel, stride, padding, activation)
    _check(ModelSpec((2, 7, 6), (conv, Flatten("f")), "mse"))


@pytest.mark.parametrize(("size", "hw"), [(2, (6, 6)), (2, (7, 5)), (3, (8, 7)), (1, (3, 3))])
def test_maxpool2d_gradients(size: int, hw: tuple[int, int]) -> None:
    _check(ModelSpec((2, *hw), (MaxPool2D("p", size), Flatten("f")), "mse"))


def test_flatten_gradients() -> None:
    _check(ModelSpec((2, 3, 4), (Flatten("f"),), "mse"))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_recurrent_gradients(cell: str, return_sequences: bool) -> None:
    _check(ModelSpec((5, 3), (Recurrent("r", cell, 4, return_sequences),), "mse"))


@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_loss_gradients(loss: str) -> None:
    _check(ModelSpec((6,), (Dense("d", 4, "identity"),), loss), n=5)


# --------------------------------------------------------- forward definitions
def _naive_conv(x, w, b, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w) + b
    return out


@pytest.mark.parametrize(("k", "stride", "pad"), [(3, 1, 0), (3, 1, 1), (3, 2, 0), (2, 3, 0)])
def test_conv2d_forward_matches_definition(k: int, stride: int, pad: int) -> None:
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(2, 3, 7, 8)), rng.normal(size=(4, 3, k, k)), rng.normal(size=4)
    out, _ = layers.conv2d_forward(x, w, b, stride, pad, "identity")
    np.testing.assert_allclose(out, _naive_conv(x, w, b, stride, pad), rtol=1e-12, atol=1e-12)


def test_maxpool_forward_drops_remainder_and_routes_ties_to_first() -> None:
    x = np.arange(2 * 5 * 7, dtype=float).reshape(1, 2, 5, 7)
    out, cache = layers.maxpool2d_forward(x, 2)
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out, x[:, :, 1:4:2, 1:6:2])
    zeros = np.zeros((1, 1, 2, 2))
    _, cache = layers.maxpool2d_forward(zeros, 2)
    dx, _ = layers.maxpool2d_backward(np.ones((1, 1, 1, 1)), cache, True)
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 0.0], [0.0, 0.0]])


def _naive_cell(cell, x, w_ih, w_hh, b_ih, b_hh):
    """The docs/design.md §2 equations, one sample at a time, for every step."""
    n, t_len, _ = x.shape
    h_size = w_hh.shape[0]
    out = np.zeros((n, t_len, h_size))
    for s in range(n):
        h, c = np.zeros(h_size), np.zeros(h_size)
        for t in range(t_len):
            gx, gh = x[s, t] @ w_ih + b_ih, h @ w_hh + b_hh
            if cell == "rnn":
                h = np.tanh(gx + gh)
            elif cell == "lstm":
                i, f, g, o = np.split(gx + gh, 4)
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            else:
                xr, xz, xn = np.split(gx, 3)
                hr, hz, hn = np.split(gh, 3)
                r, z = sigmoid(xr + hr), sigmoid(xz + hz)
                nn = np.tanh(xn + r * hn)
                h = (1 - z) * nn + z * h
            out[s, t] = h
    return out


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_forward_matches_definition(cell: str) -> None:
    spec = ModelSpec((6, 3), (Recurrent("r", cell, 4, True),), "mse")
    p = init_params(spec, 3)
    w = [p[f"r.{k}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    x = np.random.default_rng(2).normal(size=(2, 6, 3))
    seq, _ = recurrent.recurrent_forward(x, *w, cell, True)
    last, _ = recurrent.recurrent_forward(x, *w, cell, False)
    expected = _naive_cell(cell, x, *w)
    np.testing.assert_allclose(seq, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last, expected[:, -1], rtol=1e-12, atol=1e-12)


def test_losses_match_definition() -> None:
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(5, 3)) * 10, rng.integers(0, 3, 5)
    spec = ModelSpec((3,), (Flatten("f"),), "softmax_cross_entropy")
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(5), labels]))
    assert model.loss(spec, {}, logits, labels) == pytest.approx(expected, rel=1e-12)
    spec = ModelSpec((3,), (Flatten("f"),), "mse")
    y = rng.normal(size=(5, 3))
    assert model.loss(spec, {}, logits, y) == pytest.approx(np.mean((logits - y) ** 2), rel=1e-12)


def test_cross_entropy_is_finite_for_huge_logits() -> None:
    spec = ModelSpec((2,), (Flatten("f"),), "softmax_cross_entropy")
    value = model.loss(spec, {}, np.array([[1e4, -1e4]]), np.array([1]))
    assert np.isfinite(value) and value == pytest.approx(2e4)
