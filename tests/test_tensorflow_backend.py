"""The TensorFlow backend against the float64 NumPy reference, and against TF's own oracle.

For every task (and recurrent cell) x variant x dtype on cpu: loss, forward
output and every canonical gradient agree with the reference (tolerances from
`bench.agreement.tolerances`, at most 1e-10 float64 / 1e-4 float32 normwise). 20
optimiser steps (SGD with momentum, Adam) follow the reference trajectory on a
chosen set of (model, variant) pairs that covers every conversion path: plain
and XLA graphs, the Keras LSTM/SimpleRNN shared bias (its doubled update) and
the Keras GRU gate swap. Each TF program traces its graphs on first call (up
to seconds under XLA on 2 cores), which is why not every pair runs 4
trajectories. Also: `tf.test.compute_gradient` once per model, no retracing in
steady state, layouts round-trip, and cuda works or fails with a BackendError.
Skips cleanly when TensorFlow is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from conftest import (  # noqa: E402
    DTYPES,
    PRESET,
    case_params,
    check_cuda_absent_is_a_backend_error,
    cuda_failures,
    failures,
    spec_for,
    variant_matrix,
)

import impls  # noqa: E402  (after the skip: impls.load imports TensorFlow)
from bench.agreement.check import gradient_rows, trajectory_rows  # noqa: E402
from impls.base import BackendError  # noqa: E402
from tasks import get_task  # noqa: E402
from tasks.optim import OptimizerSpec  # noqa: E402
from tasks.params import init_params  # noqa: E402

BACKEND = impls.load("tensorflow")
# (task, cell or "", variant) pairs whose trajectories run in float64 with both
# optimisers: every variant, both layouts (NHWC convs, recurrences), and every
# Keras conversion (shared bias for rnn and lstm, gate swap for gru).
TRAJECTORIES = [
    ("mlp_regression", "", "function"),
    ("rnn_sequence", "gru", "function"),
    ("cnn_classification", "", "xla"),
    ("rnn_sequence", "rnn", "keras"),
    ("rnn_sequence", "lstm", "keras"),
    ("rnn_sequence", "gru", "keras"),
]
# float32 trajectories: the plain graph and the Keras shared-bias path.
TRAJECTORIES_F32 = [("cnn_classification", "", "function"), ("rnn_sequence", "lstm", "keras")]


def _overrides(cell: str) -> dict:
    return {"cell": cell} if cell else {}


def _build(task_name: str, overrides: dict, variant: str, dtype: str, optimizer: str = "sgd"):
    task = get_task(task_name)
    cfg = task.config(PRESET, overrides)
    spec = task.model(cfg)
    params = init_params(spec, seed=0)
    program = BACKEND.build(spec, params, variant=variant, dtype=dtype, device="cpu",
                            optimizer=OptimizerSpec(optimizer, cfg.lr))
    return spec, params, program, task.data(cfg), cfg


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("task_name", "overrides", "variant"), variant_matrix(BACKEND))
def test_gradients_match_numpy_reference(task_name, overrides, variant, dtype):
    rows = gradient_rows(task_name, PRESET, overrides, "tensorflow", variant, dtype, "cpu")
    names = spec_for(task_name, overrides).param_shapes()
    assert {r.tensor for r in rows} == {"loss", "output", *names}
    assert not failures(rows), failures(rows)
    worst = max(r.rel_err for r in rows)
    print(f"{task_name} {overrides} {variant} {dtype}: worst normwise {worst:.1e}")
    assert worst <= (1e-10 if dtype == "float64" else 1e-4)  # docs/design.md §4 starting point


def _trajectory_params(pairs, dtypes) -> list:
    return [
        pytest.param(t, c, v, opt, dt, id=f"{t}-{c}-{v}-{opt}-{dt}".replace("--", "-"))
        for t, c, v in pairs
        for opt in ("sgd", "adam")
        for dt in dtypes
    ]


@pytest.mark.parametrize(
    ("task_name", "cell", "variant", "optimizer", "dtype"),
    _trajectory_params(TRAJECTORIES, ["float64"])
    + _trajectory_params(TRAJECTORIES_F32, ["float32"]),
)
def test_trajectory_matches_numpy_reference(task_name, cell, variant, optimizer, dtype):
    overrides = _overrides(cell)
    rows = trajectory_rows(task_name, PRESET, overrides, "tensorflow", variant, dtype, "cpu",
                           optimizer)
    assert len(rows) == 1 + len(spec_for(task_name, overrides).param_shapes())
    assert not failures(rows), failures(rows)
    # float64: the tolerance table's 1e-8; float32: its 1e-3 bound (we measure ~3e-6 at worst).
    assert max(r.rel_err for r in rows) <= (1e-8 if dtype == "float64" else 1e-3)


@pytest.mark.parametrize(("task_name", "overrides"), case_params())
def test_tf_compute_gradient_oracle(task_name, overrides):
    """TF's autodiff vs its own finite differences, through every layer (d loss / d input)."""
    import tensorflow as tf

    spec, _, program, data, cfg = _build(task_name, overrides, "function", "float64")
    x, y = data.batch(0, cfg.batch_size)
    xd, yd = program.put(x), program.put(y)
    loss = tf.function(lambda v: program.model.loss(program.model.forward(v), yd))
    theoretical, numerical = tf.test.compute_gradient(loss, [xd], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-8)
    assert np.abs(theoretical[0]).max() > 0  # the input really reaches the loss


# One trace (and under XLA one compile) per batch shape: the cheapest model keeps it quick.
@pytest.mark.parametrize(("task_name", "overrides", "variant"), [
    pytest.param("rnn_sequence", {"cell": "gru"}, "function", id="gru-function"),
    pytest.param("mlp_regression", {}, "xla", id="mlp-xla"),
    pytest.param("rnn_sequence", {"cell": "lstm"}, "keras", id="lstm-keras"),
])
def test_no_retracing_in_steady_state(task_name, overrides, variant):
    spec, _, program, data, cfg = _build(task_name, overrides, variant, "float64", "adam")
    losses = []
    for i, batch in enumerate((cfg.batch_size, 2 * cfg.batch_size, cfg.batch_size) * 2):
        x, y = (program.put(a) for a in data.batch(i, batch))
        program.forward(x)
        program.loss_and_grads(x, y)
        losses.append(float(program.to_numpy(program.step(x, y))))
    program.sync()
    # One concrete function per batch shape: the second pass over both shapes traced nothing.
    assert program.tracing_counts() == {"forward": 2, "loss_and_grads": 2, "step": 2}
    assert all(np.isfinite(losses))


def test_a_tensorflow_without_the_private_retracing_flag_runs_the_same(monkeypatch):
    """`_traced` sets tf.function's private `_omit_frequent_tracing_warning` only where it
    exists: with the flag's name pointing at an attribute this TensorFlow lacks, the
    functions keep their own attributes and the program computes the same numbers."""
    from impls.tensorflow import program as tf_program

    def run():
        _, _, program, data, cfg = _build("mlp_regression", {}, "function", "float64", "adam")
        x, y = (program.put(a) for a in data.batch(0, cfg.batch_size))
        losses = [float(program.to_numpy(program.step(x, y))) for _ in range(3)]
        return program, losses, program.params()

    quiet, losses, params = run()
    assert getattr(quiet._step, tf_program.QUIET_RETRACING) is True
    monkeypatch.setattr(tf_program, "QUIET_RETRACING", "_flag_this_tensorflow_lacks")
    plain, losses_b, params_b = run()
    assert not hasattr(plain._step, "_flag_this_tensorflow_lacks")
    assert losses_b == losses
    for name, value in params.items():
        np.testing.assert_array_equal(params_b[name], value, err_msg=name)


@pytest.mark.parametrize(("task_name", "overrides", "variant"), variant_matrix(BACKEND))
def test_params_round_trip_through_native_layout(task_name, overrides, variant):
    spec, params, program, _, _ = _build(task_name, overrides, variant, "float64")
    back = program.params()
    assert list(back) == list(spec.param_shapes())
    for name, value in params.items():
        np.testing.assert_allclose(back[name], value, rtol=0, atol=1e-15, err_msg=name)


def test_float32_program_computes_in_float32():
    spec, _, program, data, cfg = _build("cnn_classification", {}, "xla", "float32", "adam")
    x, y = (program.put(a) for a in data.batch(0, cfg.batch_size))
    assert x.shape == (cfg.batch_size, 8, 8, 1)  # NCHW batches become NHWC once, in put
    loss, grads = program.loss_and_grads(x, y)
    assert loss.dtype.name == "float32"
    assert {g.dtype.name for g in grads} == {"float32"}
    assert {v.dtype for v in program.params().values()} == {np.dtype(np.float32)}
    assert program.precision == "fp32"


def test_runtime_threads_are_what_tensorflow_runs_with():
    import tensorflow as tf

    from impls.tensorflow import THREADS

    # what the backend reports (and every run records) is TF's own runtime setting.
    # That it follows the shared policy (intra-op: the shared count; inter-op: TF's
    # default unless the user set one) is checked in a fresh process, where the
    # policy is set before TF starts: tests/test_threads.py. In this process other
    # tests' commands may have re-applied the policy after TF was imported.
    assert THREADS == (tf.config.threading.get_intra_op_parallelism_threads(),
                       tf.config.threading.get_inter_op_parallelism_threads())
    assert THREADS[0] >= 1


def test_keras_on_another_backend_is_a_clean_error(monkeypatch):
    from impls.tensorflow.recurrent import keras_module

    keras = keras_module()
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    spec = spec_for("rnn_sequence", {})
    with pytest.raises(BackendError, match="KERAS_BACKEND"):
        BACKEND.build(spec, init_params(spec, 0), variant="keras", dtype="float64",
                      device="cpu", optimizer=OptimizerSpec())


def test_backend_metadata_and_errors():
    mlp, rnn = spec_for("mlp_regression", {}), spec_for("rnn_sequence", {})
    params = init_params(mlp, seed=0)
    assert BACKEND.devices()[0] == "cpu"
    assert BACKEND.variants == ("function", "xla", "keras", "keras_layers", "keras_xla")
    assert not BACKEND.supports(mlp, "keras") and BACKEND.supports(rnn, "keras")
    for kwargs, match in [
        (dict(variant="eager", dtype="float64", device="cpu"), "variant"),
        (dict(variant="keras", dtype="float64", device="cpu"), "recurrent"),
        (dict(variant="function", dtype="float16", device="cpu"), "dtype"),
        (dict(variant="function", dtype="float64", device="tpu"), "device"),
    ]:
        with pytest.raises(BackendError, match=match):
            BACKEND.build(mlp, params, optimizer=OptimizerSpec(), **kwargs)


def test_cuda_absent_is_a_clean_backend_error():
    check_cuda_absent_is_a_backend_error(BACKEND, "function")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_gradients_match_reference(dtype):
    for variant in BACKEND.variants:
        assert not cuda_failures(BACKEND, variant, dtype), variant
    spec = spec_for("mlp_regression", {})
    program = BACKEND.build(spec, init_params(spec, 0), variant="function", dtype=dtype,
                            device="cuda", optimizer=OptimizerSpec())
    program.reset_peak_memory()
    x = program.put(np.ones((4, 10)))
    program.sync(program.forward(x))
    assert program.peak_memory() > 0
    assert program.precision == ("fp64" if dtype == "float64" else "fp32 (tf32 off)")


def test_cpu_sync_waits_only_when_execution_is_asynchronous(monkeypatch):
    # Synchronous eager execution (TF's default) has finished a CPU call when it
    # returns; an asynchronous context, or a GPU, leaves work queued to wait for.
    import tensorflow as tf

    spec = spec_for("mlp_regression", {})
    program = BACKEND.build(spec, init_params(spec, 0), variant="function", dtype="float32",
                            device="cpu", optimizer=OptimizerSpec())
    waits = []
    monkeypatch.setattr(tf.test.experimental, "sync_devices", lambda: waits.append(1))
    program.sync(program.forward(program.put(np.ones((4, 10)))))
    assert waits == []
    monkeypatch.setattr(tf.config.experimental, "get_synchronous_execution", lambda: False)
    program.sync()
    assert waits == [1]
    program.device = "cuda"  # only the branch is under test: nothing runs on it
    monkeypatch.setattr(tf.config.experimental, "get_synchronous_execution", lambda: True)
    program.sync()
    assert waits == [1, 1]
