"""The JAX Program: jitted forward, value-and-grad and optimiser step.

Every function is compiled at its first call and never retraced for the same
shapes. The step donates the parameter and optimiser-state buffers; the
Program holds the returned ones. Canonical layouts are JAX's natural layouts,
so conversion is only a dtype cast. This module must not import `bench`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from impls.base import Program, label_dtype
from impls.jax import model, optim
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

LABELS = label_dtype("jax")  # int32, JAX's native index type (int64 is emulated on GPU)


class JaxProgram(Program):
    """One model, jitted for one variant, dtype and device."""

    #: JAX cannot reset its allocator's peak: `peak_memory` is the process lifetime's
    #: (the harness then counts a window only when it raises that peak)
    peak_memory_scope = "lifetime"

    def __init__(
        self,
        spec: ModelSpec,
        params: dict[str, np.ndarray],
        *,
        unroll: int,
        dtype: str,
        device: jax.Device,
        optimizer: OptimizerSpec,
    ) -> None:
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.device = device
        self._unroll = unroll
        # A private copy: the step donates these buffers, and on CPU device_put may alias.
        self._params = {k: self.put(np.array(v, dtype=self.dtype)) for k, v in params.items()}
        # Committed to the device like the params, so the step's second call (fed
        # the committed outputs of the first) hits the same compiled executable.
        self._state = jax.device_put(optim.init_state(optimizer, self._params), device)

        def loss(p: model.Params, x: jax.Array, y: jax.Array) -> jax.Array:
            return model.loss(spec, p, x, y, unroll)

        def step(p: model.Params, state: optim.State, x: jax.Array, y: jax.Array):
            value, grads = jax.value_and_grad(loss)(p, x, y)
            p, state = optim.update(optimizer, p, grads, state)
            return p, state, value

        self._forward = jax.jit(lambda p, x: model.forward(spec, p, x, unroll))
        self._loss_and_grads = jax.jit(jax.value_and_grad(loss))
        self._step = jax.jit(step, donate_argnums=(0, 1))

    def put(self, array: np.ndarray) -> jax.Array:
        array = np.asarray(array)
        dtype = LABELS if np.issubdtype(array.dtype, np.integer) else self.dtype
        return jax.device_put(array.astype(dtype, copy=False), self.device)

    def forward(self, x: jax.Array) -> jax.Array:
        return self._forward(self._params, x)

    def loss_and_grads(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return self._loss_and_grads(self._params, x, y)

    def step(self, x: jax.Array, y: jax.Array) -> jax.Array:
        self._params, self._state, value = self._step(self._params, self._state, x, y)
        return value

    def piecewise_inputs(self, x: jax.Array) -> dict[str, np.ndarray]:
        # Jitted like the program's own functions (compiled on first use only).
        if getattr(self, "_piecewise", None) is None:
            spec, unroll = self.spec, self._unroll
            self._piecewise = jax.jit(lambda p, x: model.piecewise_inputs(spec, p, x, unroll))
        return {k: np.array(v) for k, v in self._piecewise(self._params, x).items()}

    def sync(self, value: Any = None) -> None:
        # With no value, the newest params and state stand for all queued work.
        jax.block_until_ready(value if value is not None else (self._params, self._state))

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.array(value)  # a copy: a view could outlive a donated buffer

    def grads_to_canonical(self, grads: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        return {k: np.array(grads[k]) for k in self.spec.param_shapes()}

    def params(self) -> dict[str, np.ndarray]:
        return {k: np.array(self._params[k]) for k in self.spec.param_shapes()}

    def peak_memory(self) -> int | None:
        # JAX cannot reset its peak counter, so this is the peak since the process
        # started; the harness runs each (backend, task) group in its own process.
        stats = self.device.memory_stats()
        return None if not stats else stats.get("peak_bytes_in_use")
