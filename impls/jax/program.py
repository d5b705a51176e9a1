"""The JAX Program: jitted forward, value-and-grad and optimiser step.

Every function is compiled at its first call and never retraced for the same
shapes. The step donates the parameter and optimiser-state buffers; the
Program holds the returned ones. Canonical layouts are JAX's natural layouts,
so conversion is only a dtype cast, except for image models on CPU: the
primitive-op program runs them NHWC (`model.nhwc_layout`), with parameters
converted to that layout once here and back in `params` and
`grads_to_canonical`, and batches put NHWC, as the flax variant's are.

Precision modes (`impls.base.PRECISIONS`) are applied inside or around the
program's own calls, never left set: "bf16"/"fp16" cast the float32
parameters and the input to the compute dtype inside the jitted functions
(gradients flow back through the cast, so they, the parameters and the
optimiser state stay float32) and take the loss in float32; "fp16" also
scales the loss dynamically inside the jitted step (a step whose gradients
overflow leaves parameters and state as they were and halves the scale);
"tf32" traces and runs every call under `jax.default_matmul_precision
("tensorfloat32")`, a context JAX keys its compilation cache on, so the
process-wide "highest" stays in force outside. This module must not import `bench`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from impls.base import (
    COMPUTE_DTYPES,
    LOSS_SCALE,
    STRICT,
    Program,
    check_recurrent,
    label_dtype,
    next_loss_scale,
    probe_shapes,
)
from impls.jax import model, optim
from impls.jax.losses import LOSSES
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

LABELS = label_dtype("jax")  # int64, as every backend (impls.base.LABEL_DTYPES)

#: compute dtype per reduced mode (parameters stay in the program's dtype)
COMPUTE = {mode: getattr(jnp, name) for mode, name in COMPUTE_DTYPES.items()}


def _tf32():
    """TF32 matmuls/convolutions for the calls (and traces) in the block only."""
    return jax.default_matmul_precision("tensorfloat32")


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), tree)


def _model_functions(spec: ModelSpec, dtype: np.dtype, unroll: int, nhwc: bool, module,
                     precision: str):
    """`forward(p, x)` and `loss(p, x, y)` of a program: the primitive-op model (or the
    Flax `module`), in a reduced mode ("bf16"/"fp16") run in its compute dtype
    (`_reduced`)."""
    if module is not None:
        def forward(p: model.Params, x: jax.Array) -> jax.Array:
            return model.flax_forward(spec, p, x, module)

        def loss(p: model.Params, x: jax.Array, y: jax.Array) -> jax.Array:
            return model.flax_loss(spec, p, x, y, module)
    else:
        def forward(p: model.Params, x: jax.Array) -> jax.Array:
            return model.forward(spec, p, x, unroll, nhwc)

        def loss(p: model.Params, x: jax.Array, y: jax.Array) -> jax.Array:
            return model.loss(spec, p, x, y, unroll, nhwc)

    if precision in COMPUTE:
        return _reduced(spec, forward, COMPUTE[precision], dtype)
    return forward, loss


def _reduced(spec: ModelSpec, exact, half, full):
    """`exact` forward run on parameters and input cast to `half`, its output cast back
    to `full`; the loss taken on that output (gradients flow back through the casts)."""

    def forward(p: model.Params, x: jax.Array) -> jax.Array:
        return exact(_cast(p, half), x.astype(half)).astype(full)

    def loss(p: model.Params, x: jax.Array, y: jax.Array) -> jax.Array:
        return LOSSES[spec.loss](forward(p, x), y)

    return forward, loss


def _plain_step(loss, update: optim.Update):
    """The step: gradients of the loss, then the optimiser update."""

    def step(p: model.Params, state: optim.State, x: jax.Array, y: jax.Array):
        value, grads = jax.value_and_grad(loss)(p, x, y)
        p, state = update(p, grads, state)
        return p, state, value

    return step


def _scaled_step(loss, update: optim.Update):
    """The fp16 step: gradients of the scaled loss, unscaled; an overflowing step
    keeps parameters and optimiser state and backs the scale off (`next_loss_scale`)."""

    def step(p, state, scaler, x, y):
        scale, good = scaler
        value, grads = jax.value_and_grad(lambda q: loss(q, x, y) * scale)(p)
        grads = jax.tree_util.tree_map(lambda g: g / scale, grads)
        leaves = jax.tree_util.tree_leaves(grads)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in leaves]))
        new_p, new_state = update(p, grads, state)
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        p = jax.tree_util.tree_map(keep, new_p, p)
        state = jax.tree_util.tree_map(keep, new_state, state)
        scale, good = next_loss_scale(jnp.where, jnp.isfinite, scale, good, finite)
        return p, state, (scale, good), value / scaler[0]

    return step


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
        precision: str = STRICT,
        flax: bool = False,
    ) -> None:
        """`flax`: run the model as a Flax linen module (`model.flax_module`), with
        image batches put in Flax's NHWC layout; parameters stay canonical."""
        self.spec = spec
        self.precision_mode = precision
        self._nhwc_input = False  # parameters are put as they are, batches maybe NHWC
        self.dtype = np.dtype(dtype)
        self.device = device
        self._unroll = unroll
        #: the primitive-op program runs images NHWC, its parameters in that layout
        self.nhwc = nhwc = not flax and model.nhwc_layout(spec, device.platform)
        if nhwc:
            params = model.to_native(spec, params)
        # A private copy: the step donates these buffers, and on CPU device_put may alias.
        self._params = {k: self.put(np.array(v, dtype=self.dtype)) for k, v in params.items()}
        self._flax = flax
        self._nhwc_input = flax or nhwc
        # Committed to the device like the params, so the step's second call (fed
        # the committed outputs of the first) hits the same compiled executable.
        self._state = jax.device_put(optim.init_state(optimizer, self._params), device)
        update = optim.make_update(optimizer)

        module = model.flax_module(spec, self.dtype) if flax else None
        forward, loss = _model_functions(spec, self.dtype, unroll, nhwc, module, precision)
        self._forward = jax.jit(forward)
        self._loss_and_grads = jax.jit(jax.value_and_grad(loss))
        self._step = jax.jit(_plain_step(loss, update), donate_argnums=(0, 1))
        # d loss / d probes, jitted on first use only (hidden_state_grads is never timed)
        self._state_grads = jax.jit(jax.grad(
            lambda probes, p, x, y: model.loss_probed(spec, p, probes, x, y, unroll)))
        self._scaler = None
        if precision == "fp16":
            self._scaler = jax.device_put((jnp.asarray(LOSS_SCALE[0], self.dtype),
                                           jnp.zeros((), jnp.int32)), device)
            self._scaled = jax.jit(_scaled_step(loss, update), donate_argnums=(0, 1, 2))
        self._tf32 = precision == "tf32"

    def put(self, array: np.ndarray) -> jax.Array:
        array = np.asarray(array)
        if self._nhwc_input and not np.issubdtype(array.dtype, np.integer):
            array = np.ascontiguousarray(model.nhwc_input(self.spec, array))
        dtype = LABELS if np.issubdtype(array.dtype, np.integer) else self.dtype
        return jax.device_put(array.astype(dtype, copy=False), self.device)

    def forward(self, x: jax.Array) -> jax.Array:
        if self._tf32:
            with _tf32():
                return self._forward(self._params, x)
        return self._forward(self._params, x)

    def loss_and_grads(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        if self._tf32:
            with _tf32():
                return self._loss_and_grads(self._params, x, y)
        return self._loss_and_grads(self._params, x, y)

    def step(self, x: jax.Array, y: jax.Array) -> jax.Array:
        if self._scaler is not None:
            self._params, self._state, self._scaler, value = self._scaled(
                self._params, self._state, self._scaler, x, y)
            return value
        if self._tf32:
            with _tf32():
                self._params, self._state, value = self._step(self._params, self._state, x, y)
            return value
        self._params, self._state, value = self._step(self._params, self._state, x, y)
        return value

    @property
    def loss_scale(self) -> float | None:
        """fp16's current dynamic loss scale (None in other modes)."""
        return None if self._scaler is None else float(self._scaler[0])

    def piecewise_inputs(self, x: jax.Array) -> dict[str, np.ndarray] | None:
        # Jitted like the program's own functions (compiled on first use only); the
        # flax variant reads them from its own module, sowing, so the masks come
        # from Flax's NHWC kernels, not the primitive ones.
        if getattr(self, "_piecewise", None) is None:
            spec, unroll, nhwc = self.spec, self._unroll, self.nhwc
            if self._flax:
                recorder = model.flax_module(spec, self.dtype, record=True)
                self._piecewise = jax.jit(
                    lambda p, x: model.flax_piecewise_inputs(spec, p, x, recorder))
            else:
                self._piecewise = jax.jit(
                    lambda p, x: model.piecewise_inputs(spec, p, x, unroll, nhwc))
        return {k: np.array(v) for k, v in self._piecewise(self._params, x).items()}

    def sync(self, value: Any = None) -> None:
        # With no value, the newest params and state stand for all queued work.
        jax.block_until_ready(value if value is not None else (self._params, self._state))

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.array(value)  # a copy: a view could outlive a donated buffer

    def grads_to_canonical(self, grads: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        return self._canonical(grads)

    def params(self) -> dict[str, np.ndarray]:
        return self._canonical(self._params)

    def _canonical(self, arrays: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        found = {k: np.array(arrays[k]) for k in self.spec.param_shapes()}
        return model.to_canonical(self.spec, found) if self.nhwc else found

    def hidden_state_grads(self, x: jax.Array, y: jax.Array) -> dict[str, np.ndarray]:
        check_recurrent(self.spec)
        probes = {name: self.put(np.zeros(shape, self.dtype))
                  for name, shape in probe_shapes(self.spec, x.shape[0]).items()}
        grads = self._state_grads(probes, self._params, x, y)
        return {k: np.array(v) for k, v in grads.items()}

    def peak_memory(self) -> int | None:
        # JAX cannot reset its peak counter, so this is the peak since the process
        # started; the harness runs each (backend, task) group in its own process.
        stats = self.device.memory_stats()
        return None if not stats else stats.get("peak_bytes_in_use")
