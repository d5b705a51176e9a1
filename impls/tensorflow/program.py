"""The TensorFlow Program: forward, loss+gradients and the optimiser step as `tf.function`s.

Each of the three is traced once per input shape, as a plain `@tf.function`
in a user's script is: the graph sees the batch size, so its kernels and
grappler's rewrites are the ones a user gets (a signature with a free batch
axis made the float32 loss+gradients of the quick MLP 15-20% slower, and the
standard one 5-7%, than the same graph traced on its shape). A cell times one
batch shape, so no call in steady state retraces (tests check one concrete
function per shape); with `jit_compile=True` XLA compiles each trace once. The step computes
gradients with `tf.GradientTape` and applies the reference rule with variable
assignments inside the same graph: no host round-trip. Canonical <-> native
conversions happen only in `put`, `grads_to_canonical` and `params`, outside
the timed calls.

Precision modes (`impls.base.PRECISIONS`) belong to the program, never to the
process: "bf16"/"fp16" are built into the traced model (`model.build_model`'s
compute dtype: float32 variables read as bfloat16/float16, loss in float32);
"fp16" also scales the loss dynamically inside the step graph (an
overflowing step assigns nothing and halves the scale); "tf32" turns
TensorFlow's TensorFloat-32 execution on for each call (trace included) and
restores the previous setting after it (`tf32_enabled`). This module must not
import `bench`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from impls.base import (
    LOSS_SCALE,
    STRICT,
    BackendError,
    Program,
    check_recurrent,
    label_dtype,
    next_loss_scale,
    probe_shapes,
)
from impls.tensorflow.model import Model, loss_probed, to_native_input
from impls.tensorflow.optim import init_state, make_update
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

DEVICES = {"cpu": "/CPU:0", "cuda": "/GPU:0"}
LABELS = label_dtype("tensorflow")
#: tf.function's private switch for its "excessive retracing" warning (see `_traced`)
QUIET_RETRACING = "_omit_frequent_tracing_warning"


@contextlib.contextmanager
def tf32_enabled() -> Iterator[None]:
    """TensorFloat-32 execution for the block, then the setting as it was."""
    config = tf.config.experimental
    saved = config.tensor_float_32_execution_enabled()
    try:
        config.enable_tensor_float_32_execution(True)
        yield
    finally:
        config.enable_tensor_float_32_execution(saved)


class TensorFlowProgram(Program):
    """One model in TensorFlow on one device and dtype; variables updated in place."""

    #: recurrent layers are Keras' fused layers (the "keras" variant; set by the backend)
    keras_recurrent: bool = False
    _state_grads = None  # the probed tf.function, traced on first use

    def __init__(
        self,
        spec: ModelSpec,
        model: Model,
        *,
        dtype: tf.DType,
        device: str,
        optimizer: OptimizerSpec,
        jit_compile: bool,
        precision: str = STRICT,
    ) -> None:
        self.spec, self.model, self.dtype, self.device = spec, model, dtype, device
        self.precision_mode = precision
        self._device = DEVICES[device]
        with tf.device(self._device):
            self._state = init_state(optimizer, list(model.params))
            self._scaler = None
            if precision == "fp16":  # [scale, finite steps since the last change]
                self._scaler = (tf.Variable(LOSS_SCALE[0], dtype=dtype, trainable=False),
                                tf.Variable(0, dtype=tf.int64, trainable=False))
        self._tf32 = precision == "tf32"
        self._jit_compile = jit_compile
        self._piecewise = None  # built on first use: only agreement checks need it
        forward, loss_and_grads, step = _graph_bodies(model, make_update(optimizer), self._state,
                                                      self._scaler)
        self._forward = _traced(forward, jit_compile)
        self._loss_and_grads = _traced(loss_and_grads, jit_compile)
        self._step = _traced(step, jit_compile)

    # -- Program interface --------------------------------------------------------
    def tracing_counts(self) -> dict[str, int]:
        """How many concrete functions each `tf.function` holds (one per input shape)."""
        fns = {"forward": self._forward, "loss_and_grads": self._loss_and_grads, "step": self._step}
        return {k: f.experimental_get_tracing_count() for k, f in fns.items()}

    def put(self, array: np.ndarray) -> tf.Tensor:
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.integer):
            array = array.astype(LABELS)
        else:
            array = to_native_input(self.spec, array.astype(self.dtype.as_numpy_dtype))
            array = np.ascontiguousarray(array)
        with tf.device(self._device):
            # tf.constant lives on the host in eager mode; identity copies it over.
            return tf.identity(tf.constant(array))

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        if self._tf32:
            with tf.device(self._device), tf32_enabled():
                return self._forward(x)
        with tf.device(self._device):
            return self._forward(x)

    def loss_and_grads(self, x: tf.Tensor, y: tf.Tensor) -> tuple[Any, Any]:
        if self._tf32:
            with tf.device(self._device), tf32_enabled():
                return self._loss_and_grads(x, y)
        with tf.device(self._device):
            return self._loss_and_grads(x, y)

    def step(self, x: tf.Tensor, y: tf.Tensor) -> Any:
        if self._tf32:
            with tf.device(self._device), tf32_enabled():
                return self._step(x, y)
        with tf.device(self._device):
            return self._step(x, y)

    @property
    def loss_scale(self) -> float | None:
        """fp16's current dynamic loss scale (None in other modes)."""
        return None if self._scaler is None else float(self._scaler[0].numpy())

    def piecewise_inputs(self, x: tf.Tensor) -> dict[str, np.ndarray] | None:
        # XLA variants run the pass under XLA too (one more compile, in the untimed
        # check only): at the large preset the eager pass put 2 kink flips in a ReLU
        # MLP where XLA's fused kernels had none, and left its gradients 7x over
        # tolerance against the reference on those masks. tf.function variants run it
        # eagerly: the same kernels as their graphs.
        if self.model.piecewise_inputs is None:
            return None
        if self._piecewise is None:
            self._piecewise = (_traced(self.model.piecewise_inputs, True)
                               if self._jit_compile else self.model.piecewise_inputs)
        with tf.device(self._device):
            found = self._piecewise(x)
        # images run NHWC inside; canonical is NCHW
        return {k: (v.numpy().transpose(0, 3, 1, 2) if v.shape.rank == 4 else v.numpy())
                for k, v in found.items()}

    def sync(self, value: Any = None) -> None:
        if self.device == "cpu" and tf.config.experimental.get_synchronous_execution():
            # TensorFlow's default, synchronous eager execution returns from a CPU
            # call only after its ops ran (a 0.8 s matmul chain's call took 0.8 s and
            # the host copy after it 0.05 ms): nothing is left to wait for, and
            # `sync_devices` would add 0.05-0.3 ms to every timed call (10% of the
            # quick MLP's loss+gradients), which no user's CPU loop pays.
            return
        # Waits for every op queued on every device, `value`'s included, without
        # copying it to the host.
        tf.test.experimental.sync_devices()

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value.numpy() if hasattr(value, "numpy") else value)

    def grads_to_canonical(self, grads: Any) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for p, g in zip(self.model.params, grads, strict=True):
            out.update(p.grad_to_canonical(np.asarray(g.numpy())))
        return {k: out[k] for k in self.spec.param_shapes()}

    def params(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for p in self.model.params:
            out.update(p.value_to_canonical(p.variable.numpy()))
        return {k: out[k] for k in self.spec.param_shapes()}

    def hidden_state_grads(self, x: tf.Tensor, y: tf.Tensor) -> dict[str, np.ndarray]:
        check_recurrent(self.spec)
        if self.keras_recurrent:
            raise BackendError("tensorflow keras: hidden-state gradients are not supported "
                               "(a Keras recurrent layer takes no probe inside its loop)")
        if self._state_grads is None:
            loss = loss_probed(self.spec, self.model)

            def grads(x, y, probes):
                with tf.GradientTape() as tape:
                    tape.watch(probes)
                    value = loss(x, y, probes)
                return tape.gradient(value, probes)

            self._state_grads = tf.function(grads)
        with tf.device(self._device):
            probes = {name: tf.zeros(shape, self.dtype)
                      for name, shape in probe_shapes(self.spec, x.shape[0]).items()}
            grads = self._state_grads(x, y, probes)
        return {k: np.asarray(v.numpy()) for k, v in grads.items()}

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_memory(self) -> int | None:
        # TF's CPU allocator keeps no statistics; its GPU allocator does.
        if self.device == "cuda":
            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        return None


def _traced(body, jit_compile: bool):
    """`body` as a `tf.function` traced once per input shape: no input_signature and no
    reduce_retracing (see the module docstring)."""
    fn = tf.function(body, jit_compile=jit_compile)
    # TF counts traces per code object, so a process that builds many Programs (each
    # tracing its own closures once per shape) gets "excessive retracing" warnings
    # that are false; real retracing is caught by `tracing_counts`. A private flag of
    # tf.function (TF 2.x): set only where it exists, so a TF without it still runs
    # (with the warnings) instead of carrying a flag nothing reads.
    if hasattr(fn, QUIET_RETRACING):
        setattr(fn, QUIET_RETRACING, True)
    return fn


def _graph_bodies(model: Model, update, state, scaler=None):
    """The three Python bodies that `tf.function` traces, as closures over one model and
    its optimiser `update` and `state` (`impls.tensorflow.optim`);
    with a `scaler` (fp16) the loss is scaled and an overflowing step skipped."""
    params = list(model.params)
    variables = [p.variable for p in params]

    def forward(x: tf.Tensor) -> tf.Tensor:
        return model.forward(x)

    def loss_and_grads(x: tf.Tensor, y: tf.Tensor):
        with tf.GradientTape() as tape:
            loss = model.loss(model.forward(x), y)
        return loss, tape.gradient(loss, variables)

    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        loss, grads = loss_and_grads(x, y)
        update(params, grads, state)
        return loss

    if scaler is None:
        return forward, loss_and_grads, step
    scale, good = scaler

    def scaled_grads(x: tf.Tensor, y: tf.Tensor):
        with tf.GradientTape() as tape:
            loss = model.loss(model.forward(x), y)
            scaled = loss * scale
        grads = [g / scale for g in tape.gradient(scaled, variables)]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        return loss, grads, finite

    def unscaled_loss_and_grads(x: tf.Tensor, y: tf.Tensor):
        loss, grads, _ = scaled_grads(x, y)
        return loss, grads

    def scaled_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        loss, grads, finite = scaled_grads(x, y)

        def apply() -> tf.Tensor:
            update(params, grads, state)
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        new_scale, count = next_loss_scale(tf.where, tf.math.is_finite, scale, good, finite)
        scale.assign(new_scale)
        good.assign(count)
        return loss

    return forward, unscaled_loss_and_grads, scaled_step
