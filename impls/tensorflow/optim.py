"""The reference optimiser rules (tasks/optim.py) as TensorFlow variable updates.

Written out with `assign`/`assign_sub` rather than Keras optimizers, which
differ in small ways (Adam's epsilon placement, momentum form), so the float64
trajectory matches the NumPy reference to rounding. Everything here runs
inside the step's `tf.function`: no host round-trip. The bias corrections are
computed in float64 whatever the dtype, like the reference's Python floats.
This module must not import `bench`.

The optimiser API of every backend (`impls.OPTIMIZER_API`): `init_state(spec,
params) -> state` and `make_update(spec) -> update(params, grads, state) ->
(params, state)`. Here `params` are the model's `NativeParam`s, the state is
variables, and `update` assigns them in place and returns the same objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from impls.tensorflow.model import NativeParam
from tasks.optim import OptimizerSpec

Params = list[NativeParam]


@dataclass
class OptimizerState:
    """Per-parameter slot variables (zero at start) and the step count t (a float64
    variable, counting Adam's steps)."""

    t: tf.Variable
    slots: list[list[tf.Variable]]  # SGD: [velocity]; Adam: [m, v]


Update = Callable[[Params, list[tf.Tensor], OptimizerState], tuple[Params, OptimizerState]]


def init_state(spec: OptimizerSpec, params: Params) -> OptimizerState:
    n_slots = 1 if spec.name == "sgd" else 2
    slots = [[tf.Variable(tf.zeros_like(p.variable), trainable=False) for p in params]
             for _ in range(n_slots)]
    return OptimizerState(tf.Variable(tf.constant(0.0, tf.float64), trainable=False), slots)


def _sgd(s: OptimizerSpec, params: Params, grads: list[tf.Tensor],
         state: OptimizerState) -> None:
    """v <- momentum * v + g;  p <- p - lr * v."""
    (velocity,) = state.slots
    for p, g, v in zip(params, grads, velocity, strict=True):
        v_new = s.momentum * v + g
        v.assign(v_new)
        p.variable.assign_sub((s.lr * p.update_scale) * v_new)


def _adam(s: OptimizerSpec, params: Params, grads: list[tf.Tensor],
          state: OptimizerState) -> None:
    """Bias-corrected Adam with eps outside the square root; `t` counts from 1."""
    t = state.t + 1.0
    state.t.assign(t)
    c1 = 1.0 - tf.pow(tf.constant(s.beta1, tf.float64), t)
    c2 = 1.0 - tf.pow(tf.constant(s.beta2, tf.float64), t)
    for p, g, m, v in zip(params, grads, *state.slots, strict=True):
        dtype = p.variable.dtype
        m_new = s.beta1 * m + (1.0 - s.beta1) * g
        v_new = s.beta2 * v + (1.0 - s.beta2) * (g * g)
        m.assign(m_new)
        v.assign(v_new)
        m_hat = m_new / tf.cast(c1, dtype)
        denom = tf.sqrt(v_new / tf.cast(c2, dtype)) + s.eps
        p.variable.assign_sub((s.lr * p.update_scale) * m_hat / denom)


_RULES = {"sgd": _sgd, "adam": _adam}


def make_update(spec: OptimizerSpec) -> Update:
    """`update(params, grads, state) -> (params, state)`, assigning in place (traced
    inside the step's `tf.function`)."""
    rule = _RULES[spec.name]

    def update(params: Params, grads: list[tf.Tensor], state: OptimizerState
               ) -> tuple[Params, OptimizerState]:
        rule(spec, params, grads, state)
        return params, state

    return update
