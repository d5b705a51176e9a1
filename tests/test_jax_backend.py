"""The JAX backend against the float64 NumPy reference, and against JAX's own oracle.

For every task (and recurrent cell) x variant x dtype on cpu: loss, forward
output and every canonical gradient agree with the reference; 20 optimiser
steps (SGD with momentum, Adam) follow the reference trajectory. Tolerances
come from `bench.agreement.tolerances`. Also: `jax.test_util.check_grads` once per model,
float32 programs contain no float64 arithmetic, the step compiles once and
donates its buffers, and cuda either works or fails with a BackendError.
Skips cleanly when JAX is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from conftest import (  # noqa: E402
    CASES,
    DTYPES,
    PRESET,
    build_case,
    case_id,
    case_params,
    check_cuda_absent_is_a_backend_error,
    cuda_failures,
    failures,
    setup_case,
    spec_for,
    variant_matrix,
)

import impls  # noqa: E402  (after the skip: impls.load imports JAX)
from bench.agreement.check import gradient_rows, trajectory_rows  # noqa: E402
from impls.base import BackendError  # noqa: E402
from tasks import get_task  # noqa: E402
from tasks.optim import OptimizerSpec  # noqa: E402
from tasks.params import init_params  # noqa: E402

BACKEND = impls.load("jax")


def _setup(task_name: str, overrides: dict, dtype: str, optimizer: str = "sgd"):
    _, spec, params, program, x, y = build_case(BACKEND, task_name, overrides, "jit", dtype,
                                                optimizer)
    return spec, params, program, x, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("task_name", "overrides", "variant"), variant_matrix(BACKEND))
def test_gradients_match_numpy_reference(task_name, overrides, variant, dtype):
    rows = gradient_rows(task_name, PRESET, overrides, "jax", variant, dtype, "cpu")
    spec = spec_for(task_name, overrides)
    assert {r.tensor for r in rows} == {"loss", "output", *spec.param_shapes()}
    assert not failures(rows), failures(rows)
    worst = max(r.rel_err for r in rows)
    assert worst <= (1e-10 if dtype == "float64" else 1e-4)  # docs/design.md §4 starting point


def _trajectoryvariant_matrix(BACKEND) -> list:
    """Every model x optimiser x dtype for the default variant; the unrolled-scan
    variant differs only inside the recurrence, so it gets float64 Adam (the
    strictest check) per cell, which keeps this file fast on two cores."""
    models = CASES
    cases = [(t, o, "jit", opt, dt) for t, o in models for opt in ("sgd", "adam") for dt in DTYPES]
    cases += [(t, o, "scan_unroll", "adam", "float64") for t, o in models if "cell" in o]
    return [pytest.param(*c, id=f"{case_id(c[0], c[1])}-{'-'.join(c[2:])}") for c in cases]


@pytest.mark.parametrize(("task_name", "overrides", "variant", "optimizer", "dtype"),
                         _trajectoryvariant_matrix(BACKEND))
def test_trajectory_matches_numpy_reference(task_name, overrides, variant, optimizer, dtype):
    rows = trajectory_rows(task_name, PRESET, overrides, "jax", variant, dtype, "cpu", optimizer)
    assert len(rows) == 1 + len(spec_for(task_name, overrides).param_shapes())
    assert not failures(rows), failures(rows)


def test_unrolled_scan_with_a_remainder_matches_reference():
    # 5 steps with unroll 3: one unrolled block plus a remainder of 2.
    import jax

    from impls.jax import model
    from impls.numpy import model as reference

    task = get_task("rnn_sequence")
    cfg = task.config(PRESET, {"cell": "gru", "seq_len": 5, "layers": 1})
    spec, x, y = task.model(cfg), *task.data(cfg).batch(0, cfg.batch_size)
    params = init_params(spec, seed=0)
    ref_loss, ref_grads = reference.loss_and_grads(spec, params, x, y)
    loss, grads = jax.jit(jax.value_and_grad(lambda p: model.loss(spec, p, x, y, unroll=3)))(
        params)
    assert abs(float(loss) - float(ref_loss)) <= 1e-12 * abs(float(ref_loss))
    for k, ref in ref_grads.items():
        assert np.linalg.norm(np.asarray(grads[k]) - ref) <= 1e-10 * np.linalg.norm(ref), k


@pytest.mark.parametrize(("task_name", "overrides"), case_params())
def test_jax_check_grads_oracle(task_name, overrides):
    import jax
    from jax.test_util import check_grads

    from impls.jax import model

    spec, params, program, x, y = _setup(task_name, overrides, "float64")
    xd, yd = program.put(x), program.put(y)  # in the program's layout (NHWC images on CPU)
    loss = jax.jit(lambda p: model.loss(spec, p, xd, yd, nhwc=program.nhwc))
    p64 = dict(program._params)  # native layout, as the program holds them
    check_grads(loss, (p64,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("task_name", "overrides"), [("cnn_classification", {}),
                                                    ("rnn_sequence", {"cell": "lstm"})])
def test_float32_programs_compute_in_float32(task_name, overrides):
    spec, params, program, x, y = _setup(task_name, overrides, "float32", optimizer="adam")
    xd, yd = program.put(x), program.put(y)
    forward = program._forward.lower(program._params, xd).as_text()
    assert "f32" in forward and "f64" not in forward
    step = program._step.lower(program._params, program._state, xd, yd).as_text()
    # Adam's bias corrections are float64 scalars in every backend (the reference's
    # Python floats), rounded once to float32: no float64 array in the step
    assert "f32" in step and "xf64>" not in step
    loss, grads = program.loss_and_grads(xd, yd)
    assert loss.dtype == np.float32
    assert {str(g.dtype) for g in grads.values()} == {"float32"}


def test_step_compiles_once_donates_and_updates_params():
    spec, params, program, x, y = _setup("rnn_sequence", {"cell": "lstm"}, "float64", "adam")
    xd, yd = program.put(x), program.put(y)
    before = program.params()
    old_weight = program._params["dense0.weight"]
    losses = [float(program.to_numpy(program.step(xd, yd))) for _ in range(3)]
    program.sync()
    assert old_weight.is_deleted()  # the step really donated the parameter buffer
    assert program._step._cache_size() == 1  # no retracing in steady state
    assert losses[2] < losses[0]
    after = program.params()
    assert all(not np.array_equal(before[k], after[k]) for k in spec.param_shapes())
    for k, v in params.items():  # the caller's canonical arrays are untouched
        np.testing.assert_array_equal(v, init_params(spec, seed=0)[k])
    assert program.precision == "fp64"


def test_cnn_on_cpu_convolves_channels_last_behind_a_canonical_boundary():
    """XLA:CPU's fast convolutions want NHWC/HWIO: the jit program runs images that
    way, while what goes in and comes out (parameters, gradients, masks) stays
    canonical and equals the NCHW computation of the same model."""
    import jax

    from impls.jax import model

    spec, params, program, x, y = _setup("cnn_classification", {}, "float64")
    assert program.nhwc
    xd, yd = program.put(x), program.put(y)
    assert xd.shape == x.transpose(0, 2, 3, 1).shape
    hlo = program._forward.lower(program._params, xd).as_text()
    convs = [line for line in hlo.splitlines() if "stablehlo.convolution" in line]
    assert convs and all("[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]" in c for c in convs)
    for k, v in program.params().items():  # converted once each way, exactly
        np.testing.assert_array_equal(v, params[k])
    # the same model in canonical NCHW/OIHW, on canonical parameters
    nchw_loss, nchw_grads = jax.jit(jax.value_and_grad(
        lambda p: model.loss(spec, p, x, y)))(params)
    loss, grads = program.loss_and_grads(xd, yd)
    assert abs(float(loss) - float(nchw_loss)) <= 1e-13 * abs(float(nchw_loss))
    got = program.grads_to_canonical(grads)
    assert set(got) == set(params)
    for k, ref in nchw_grads.items():
        assert got[k].shape == params[k].shape
        assert np.linalg.norm(got[k] - ref) <= 1e-12 * np.linalg.norm(ref), k
    masks = program.piecewise_inputs(xd)
    ref_masks = jax.jit(lambda p: model.piecewise_inputs(spec, p, x))(params)
    assert set(masks) == set(ref_masks) and masks
    for k, ref in ref_masks.items():
        np.testing.assert_allclose(masks[k], ref, rtol=1e-12, atol=1e-12)


def test_backend_metadata_and_errors():
    spec = spec_for("mlp_regression", {})
    params = init_params(spec, seed=0)
    assert BACKEND.devices()[0] == "cpu"
    assert BACKEND.variants[0] == "jit"
    assert not BACKEND.supports(spec, "scan_unroll")
    assert BACKEND.supports(spec_for("rnn_sequence", {}), "scan_unroll")
    with pytest.raises(BackendError, match="variant"):
        BACKEND.build(spec, params, variant="eager", dtype="float64", device="cpu",
                      optimizer=OptimizerSpec())
    with pytest.raises(BackendError, match="dtype"):
        BACKEND.build(spec, params, variant="jit", dtype="float16", device="cpu",
                      optimizer=OptimizerSpec())


def test_cuda_absent_is_a_clean_backend_error():
    check_cuda_absent_is_a_backend_error(BACKEND, "jit")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_agrees_with_reference(dtype):
    assert not cuda_failures(BACKEND, "jit", dtype)
    _, spec, params, _, _ = setup_case("mlp_regression", {})
    program = BACKEND.build(spec, params, variant="jit", dtype=dtype, device="cuda",
                            optimizer=OptimizerSpec())
    assert program.precision == ("fp64" if dtype == "float64" else "fp32 (tf32 off)")
