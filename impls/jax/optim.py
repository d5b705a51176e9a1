"""The optimiser rules of `tasks.optim` as pure JAX functions over parameter dicts.

Written out rather than taken from optax so the arithmetic is exactly the
reference rule (PyTorch-style momentum; Adam with eps outside the square root
and bias correction by the step count). The step counter lives on the device,
so an update never needs the host. Must not import `bench`.

The optimiser API of every backend (`impls.OPTIMIZER_API`): `init_state(spec,
params) -> state` and `make_update(spec) -> update(params, grads, state) ->
(params, state)`. Here `update` is pure (new arrays, nothing changed in
place), so the program's jitted step traces it and donates the old buffers.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from tasks.optim import OptimizerSpec

Array = jax.Array
Params = dict[str, Array]
State = dict[str, object]
Update = Callable[[Params, Params, State], tuple[Params, State]]


def init_state(opt: OptimizerSpec, params: Params) -> State:
    # Separate buffers for every slot: the step donates them all, and XLA refuses
    # to donate one buffer twice.
    def zeros() -> Params:
        return {k: jnp.zeros_like(v) for k, v in params.items()}

    if opt.name == "sgd":
        return {"v": zeros()}
    return {"m": zeros(), "v": zeros(), "t": jnp.zeros((), dtype=jnp.int32)}


def _update(opt: OptimizerSpec, params: Params, grads: Params, state: State
            ) -> tuple[Params, State]:
    """New (params, state) after one step with gradients `grads`."""
    if opt.name == "sgd":
        v = {k: opt.momentum * state["v"][k] + g for k, g in grads.items()}
        return {k: p - opt.lr * v[k] for k, p in params.items()}, {"v": v}
    t = state["t"] + 1
    # Bias corrections in float64, then rounded to the parameter dtype, as in every
    # backend (tasks.optim; the reference uses Python floats). x64 is enabled.
    t64 = t.astype(jnp.float64)
    c1, c2 = 1 - opt.beta1**t64, 1 - opt.beta2**t64
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        m = opt.beta1 * state["m"][k] + (1 - opt.beta1) * g
        v = opt.beta2 * state["v"][k] + (1 - opt.beta2) * g * g
        m_hat = m / c1.astype(p.dtype)
        v_hat = v / c2.astype(p.dtype)
        new_p[k] = p - opt.lr * m_hat / (jnp.sqrt(v_hat) + opt.eps)
        new_m[k], new_v[k] = m, v
    return new_p, {"m": new_m, "v": new_v, "t": t}


def make_update(spec: OptimizerSpec) -> Update:
    """`update(params, grads, state) -> (params, state)`, pure: for tracing under `jit`."""

    def update(params: Params, grads: Params, state: State) -> tuple[Params, State]:
        return _update(spec, params, grads, state)

    return update
