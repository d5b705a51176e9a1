"""The NumPy reference as a whole: every task's model against finite differences,
the Program interface (dtypes, put, step), and the optimiser rules of
tasks/optim.py checked by hand. Needs only NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import case_params, setup_case

import impls
from bench.agreement.finite_diff import INPUT, check_model, numerical_grads
from impls.base import BackendError
from impls.numpy import BACKEND, model
from impls.numpy.optim import init_state, make_update
from tasks.optim import OptimizerSpec

TOL = 1e-6


def _setup(task_name: str, overrides: dict, preset: str = "tiny"):
    _, spec, params, x, y = setup_case(task_name, overrides, preset)
    return spec, params, x, y


@pytest.mark.parametrize(("task_name", "overrides"), case_params())
def test_full_model_matches_finite_differences(task_name: str, overrides: dict) -> None:
    spec, params, x, y = _setup(task_name, overrides)
    errs = check_model(spec, params, x, y, wrt_input=True)
    worst = max(errs.values())
    print(f"{task_name} {overrides}: worst normwise error {worst:.2e}")
    assert set(errs) == set(spec.param_shapes()) | {INPUT}
    assert worst <= TOL, errs


def test_numerical_grads_of_a_known_function_and_subset() -> None:
    a = np.linspace(-1.0, 1.0, 200).reshape(10, 20)
    b = np.array([0.3, -0.7])
    before = a.copy()
    num = numerical_grads(lambda d: np.sum(d["a"] ** 3) + np.prod(d["b"]), {"a": a, "b": b})
    idx, vals = num["a"]
    assert len(idx) == 64 and len(np.unique(idx)) == 64  # subset of a large tensor
    np.testing.assert_allclose(vals, 3 * a.reshape(-1)[idx] ** 2, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(num["b"][0], [0, 1])
    np.testing.assert_allclose(num["b"][1], [-0.7, 0.3], rtol=1e-8)
    np.testing.assert_array_equal(a, before)  # the caller's arrays are untouched


def test_check_model_catches_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, params, x, y = _setup("mlp_regression", {})
    real = model.loss_grads_and_dx

    def broken(*args):
        value, grads, dx = real(*args)
        grads["dense0.bias"] = grads["dense0.bias"] * 1.01
        return value, grads, dx

    monkeypatch.setattr(model, "loss_grads_and_dx", broken)
    errs = check_model(spec, params, x, y)
    assert errs["dense0.bias"] > 1e-3 and errs["dense0.weight"] <= TOL


@pytest.mark.parametrize(("task_name", "overrides"), case_params())
def test_float32_program_stays_float32(task_name: str, overrides: dict) -> None:
    spec, params, x, y = _setup(task_name, overrides)
    prog = BACKEND.build(
        spec,
        params,
        variant="reference",
        dtype="float32",
        device="cpu",
        optimizer=OptimizerSpec("adam", lr=1e-3),
    )
    assert prog.precision == "fp32"
    xs, ys = prog.put(x), prog.put(y)
    assert xs.dtype == np.float32
    assert ys.dtype == (np.int64 if y.dtype.kind == "i" else np.float32)
    assert prog.forward(xs).dtype == np.float32
    loss, grads = prog.loss_and_grads(xs, ys)
    assert loss.dtype == np.float32
    _, ref = model.loss_and_grads(spec, params, x, y)
    for k, g in prog.grads_to_canonical(grads).items():
        assert g.dtype == np.float32, k
        assert np.linalg.norm(g - ref[k]) <= 1e-4 * np.linalg.norm(ref[k]), k
    assert prog.step(xs, ys).dtype == np.float32
    assert all(p.dtype == np.float32 for p in prog.params().values())


def test_step_returns_loss_before_update_and_training_reduces_loss() -> None:
    spec, params, x, y = _setup("mlp_regression", {})
    prog = BACKEND.build(
        spec,
        params,
        variant="reference",
        dtype="float64",
        device="cpu",
        optimizer=OptimizerSpec("sgd", lr=0.05),
    )
    xs, ys = prog.put(x), prog.put(y)
    first, _ = prog.loss_and_grads(xs, ys)
    assert prog.step(xs, ys) == first
    snapshot = prog.params()
    for _ in range(50):
        last = prog.step(xs, ys)
    assert last < 0.5 * first
    # params() hands out copies: stepping must not change an earlier snapshot.
    assert not np.shares_memory(snapshot["dense0.weight"], prog.params()["dense0.weight"])
    assert not np.array_equal(snapshot["dense0.weight"], prog.params()["dense0.weight"])


def test_build_rejects_bad_choices() -> None:
    spec, params, _, _ = _setup("mlp_regression", {})
    kw = dict(variant="reference", dtype="float64", device="cpu", optimizer=OptimizerSpec())
    for bad in ({"dtype": "float16"}, {"device": "cuda"}, {"variant": "fast"}):
        with pytest.raises(BackendError):
            BACKEND.build(spec, params, **{**kw, **bad})
    with pytest.raises(BackendError, match="dense0.bias"):
        BACKEND.build(spec, {k: v for k, v in params.items() if k != "dense0.bias"}, **kw)


def test_registry_loads_numpy_backend() -> None:
    backend = impls.load("numpy")
    assert backend is BACKEND
    assert backend.name == "numpy" and backend.variants == ("reference",)
    assert backend.devices() == ("cpu",) and backend.version() == np.__version__


# ------------------------------------------------------------------ optimisers
def _two_params() -> tuple[dict, list[dict]]:
    params = {"a": np.array([1.0, -2.0]), "b": np.array([[0.5]])}
    grads = [
        {"a": np.array([0.1, -0.3]), "b": np.array([[2.0]])},
        {"a": np.array([-0.2, 0.4]), "b": np.array([[-1.0]])},
    ]
    return params, grads


def test_sgd_momentum_matches_hand_computation() -> None:
    params, grads = _two_params()
    spec = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
    update, state = make_update(spec), init_state(spec, params)
    for g in grads:
        params, state = update(params, g, state)
    # v1 = g1; p1 = p0 - 0.1 g1; v2 = 0.9 g1 + g2; p2 = p1 - 0.1 v2
    np.testing.assert_allclose(
        params["a"],
        [1.0 - 0.01 - 0.1 * (0.09 - 0.2), -2.0 + 0.03 - 0.1 * (-0.27 + 0.4)],
        rtol=1e-15,
    )
    np.testing.assert_allclose(params["b"], [[0.5 - 0.2 - 0.1 * (1.8 - 1.0)]], rtol=1e-15)


def test_adam_matches_hand_computation() -> None:
    params, grads = _two_params()
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    spec = OptimizerSpec("adam", lr=lr, beta1=b1, beta2=b2, eps=eps)
    update, state = make_update(spec), init_state(spec, params)
    params, state = update(params, grads[0], state)
    # After one step the bias-corrected m/sqrt(v) is sign(g) up to eps.
    g = grads[0]["a"]
    np.testing.assert_allclose(
        params["a"], np.array([1.0, -2.0]) - lr * g / (np.abs(g) + eps), rtol=1e-15
    )
    params, state = update(params, grads[1], state)
    assert state["t"] == 2
    g1, g2 = grads[0]["b"][0, 0], grads[1]["b"][0, 0]
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1 * g1 + (1 - b2) * g2 * g2
    p1 = 0.5 - lr * g1 / (abs(g1) + eps)
    p2 = p1 - lr * (m / (1 - b1**2)) / (np.sqrt(v / (1 - b2**2)) + eps)
    assert params["b"][0, 0] == pytest.approx(p2, rel=1e-14)
