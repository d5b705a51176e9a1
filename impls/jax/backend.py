"""`JaxBackend` and `JaxProgram`: jitted forward, value-and-grad and optimiser step.

Variants: `jit` (the default) runs each recurrence as a rolled `lax.scan`;
`scan_unroll` is the same program with `lax.scan(unroll=SCAN_UNROLL)`, the
usual JAX knob for recurrences with little work per step, so it only applies
to models with a recurrent layer. Every function is compiled at its first call
and never retraced for the same shapes. The step donates the parameter and
optimiser-state buffers; the Program holds the returned ones. Canonical
layouts are JAX's natural layouts, so conversion is only a dtype cast.
This module must not import `bench`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from impls.base import Backend, BackendError, Program
from impls.jax import model, optim
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

SCAN_UNROLL = 8  # steps per scan iteration in the `scan_unroll` variant
_UNROLL = {"jit": 1, "scan_unroll": SCAN_UNROLL}
_PLATFORMS = {"cpu": "cpu", "cuda": "gpu"}


def _jax_device(device: str) -> jax.Device:
    if device not in _PLATFORMS:
        raise BackendError(f"unknown device {device!r}; choose from {', '.join(_PLATFORMS)}")
    try:
        return jax.devices(_PLATFORMS[device])[0]
    except RuntimeError:
        raise BackendError(f"jax: no {device} device visible (jax.devices() = "
                           f"{jax.devices()})") from None


class JaxProgram(Program):
    """One model, jitted for one variant, dtype and device."""

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
        gpu = device.platform == "gpu"
        self.precision = "fp64" if dtype == "float64" else ("fp32 (tf32 off)" if gpu else "fp32")
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
        # Labels as int32, JAX's native index type (int64 is emulated on GPU).
        dtype = np.int32 if np.issubdtype(array.dtype, np.integer) else self.dtype
        return jax.device_put(array.astype(dtype, copy=False), self.device)

    def forward(self, x: jax.Array) -> jax.Array:
        return self._forward(self._params, x)

    def loss_and_grads(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return self._loss_and_grads(self._params, x, y)

    def step(self, x: jax.Array, y: jax.Array) -> jax.Array:
        self._params, self._state, value = self._step(self._params, self._state, x, y)
        return value

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


class JaxBackend(Backend):
    name = "jax"
    variants = ("jit", "scan_unroll")
    recurrent_variants = ("scan_unroll",)

    def version(self) -> str:
        return jax.__version__

    def devices(self) -> tuple[str, ...]:
        try:
            return ("cpu", "cuda") if jax.devices("gpu") else ("cpu",)
        except RuntimeError:
            return ("cpu",)

    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec) -> Program:
        return JaxProgram(spec, params, unroll=_UNROLL[variant], dtype=dtype,
                          device=_jax_device(device), optimizer=optimizer)
