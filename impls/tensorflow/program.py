"""The TensorFlow Program: forward, loss+gradients and the optimiser step as `tf.function`s.

Each of the three is traced once, with a fixed input signature whose batch
axis is free, so no call in steady state retraces (tests check the concrete
function count stays at one). With `jit_compile=True` XLA compiles each
distinct batch shape once under that single trace. The step computes
gradients with `tf.GradientTape` and applies the reference rule with variable
assignments inside the same graph: no host round-trip. Canonical <-> native
conversions happen only in `put`, `grads_to_canonical` and `params`, outside
the timed calls. This module must not import `bench`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from impls.base import Program, label_dtype
from impls.tensorflow.model import Model, native_input_shape, to_native_input
from impls.tensorflow.optim import make_optimizer
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

DEVICES = {"cpu": "/CPU:0", "cuda": "/GPU:0"}
LABELS = label_dtype("tensorflow")


class TensorFlowProgram(Program):
    """One model in TensorFlow on one device and dtype; variables updated in place."""

    def __init__(
        self,
        spec: ModelSpec,
        model: Model,
        *,
        dtype: tf.DType,
        device: str,
        optimizer: OptimizerSpec,
        jit_compile: bool,
    ) -> None:
        self.spec, self.model, self.dtype, self.device = spec, model, dtype, device
        self._device = DEVICES[device]
        with tf.device(self._device):
            self._optimizer = make_optimizer(optimizer, list(model.params))
        x_spec = tf.TensorSpec((None, *native_input_shape(spec)), dtype)
        if spec.loss == "mse":
            y_spec = tf.TensorSpec((None, *spec.output_shape), dtype)
        else:
            y_spec = tf.TensorSpec((None,), tf.as_dtype(LABELS))
        forward, loss_and_grads, step = _graph_bodies(model, self._optimizer)
        self._forward = tf.function(forward, input_signature=[x_spec], jit_compile=jit_compile)
        self._loss_and_grads = tf.function(
            loss_and_grads, input_signature=[x_spec, y_spec], jit_compile=jit_compile
        )
        self._step = tf.function(step, input_signature=[x_spec, y_spec], jit_compile=jit_compile)
        for fn in (self._forward, self._loss_and_grads, self._step):
            # TF counts traces per code object, so a process that builds many Programs
            # (each tracing its own closures once) gets "excessive retracing"
            # warnings that are false; real retracing is caught by `tracing_counts`.
            fn._omit_frequent_tracing_warning = True

    # -- Program interface --------------------------------------------------------
    def tracing_counts(self) -> dict[str, int]:
        """How many concrete functions each `tf.function` holds (1 in steady state)."""
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
        with tf.device(self._device):
            return self._forward(x)

    def loss_and_grads(self, x: tf.Tensor, y: tf.Tensor) -> tuple[Any, Any]:
        with tf.device(self._device):
            return self._loss_and_grads(x, y)

    def step(self, x: tf.Tensor, y: tf.Tensor) -> Any:
        with tf.device(self._device):
            return self._step(x, y)

    def piecewise_inputs(self, x: tf.Tensor) -> dict[str, np.ndarray] | None:
        # Eager (no tf.function): the masks of XLA's fused kernels can only differ
        # where rounding differs, which the check then reports as a residual.
        if self.model.piecewise is None:
            return None
        with tf.device(self._device):
            found = self.model.piecewise(x)
        # images run NHWC inside; canonical is NCHW
        return {k: (v.numpy().transpose(0, 3, 1, 2) if v.shape.rank == 4 else v.numpy())
                for k, v in found.items()}

    def sync(self, value: Any = None) -> None:
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

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_memory(self) -> int | None:
        # TF's CPU allocator keeps no statistics; its GPU allocator does.
        if self.device == "cuda":
            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        return None


def _graph_bodies(model: Model, optimizer):
    """The three Python bodies that `tf.function` traces, as closures over one model."""
    variables = [p.variable for p in model.params]

    def forward(x: tf.Tensor) -> tf.Tensor:
        return model.apply(x)

    def loss_and_grads(x: tf.Tensor, y: tf.Tensor):
        with tf.GradientTape() as tape:
            loss = model.loss(model.apply(x), y)
        return loss, tape.gradient(loss, variables)

    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        loss, grads = loss_and_grads(x, y)
        optimizer.apply(grads)
        return loss

    return forward, loss_and_grads, step
