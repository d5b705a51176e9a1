"""The reference optimiser rules (tasks/optim.py) as TensorFlow variable updates.

Written out with `assign`/`assign_sub` rather than Keras optimizers, which
differ in small ways (Adam's epsilon placement, momentum form), so the float64
trajectory matches the NumPy reference to rounding. Everything here runs
inside the step's `tf.function`: no host round-trip. The bias corrections are
computed in float64 whatever the dtype, like the reference's Python floats.
This module must not import `bench`.
"""

from __future__ import annotations

import tensorflow as tf

from impls.tensorflow.model import NativeParam
from tasks.optim import OptimizerSpec


def _zeros_like(p: NativeParam) -> tf.Variable:
    return tf.Variable(tf.zeros_like(p.variable), trainable=False)


class SGD:
    """v <- momentum * v + g;  p <- p - lr * v."""

    def __init__(self, spec: OptimizerSpec, params: list[NativeParam]) -> None:
        self.spec, self.params = spec, params
        self.velocity = [_zeros_like(p) for p in params]

    def apply(self, grads: list[tf.Tensor]) -> None:
        s = self.spec
        for p, g, v in zip(self.params, grads, self.velocity, strict=True):
            v_new = s.momentum * v + g
            v.assign(v_new)
            p.variable.assign_sub((s.lr * p.update_scale) * v_new)


class Adam:
    """Bias-corrected Adam with eps outside the square root; `t` counts from 1."""

    def __init__(self, spec: OptimizerSpec, params: list[NativeParam]) -> None:
        self.spec, self.params = spec, params
        self.t = tf.Variable(tf.constant(0.0, tf.float64), trainable=False)
        self.m = [_zeros_like(p) for p in params]
        self.v = [_zeros_like(p) for p in params]

    def apply(self, grads: list[tf.Tensor]) -> None:
        s = self.spec
        t = self.t + 1.0
        self.t.assign(t)
        c1 = 1.0 - tf.pow(tf.constant(s.beta1, tf.float64), t)
        c2 = 1.0 - tf.pow(tf.constant(s.beta2, tf.float64), t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            dtype = p.variable.dtype
            m_new = s.beta1 * m + (1.0 - s.beta1) * g
            v_new = s.beta2 * v + (1.0 - s.beta2) * (g * g)
            m.assign(m_new)
            v.assign(v_new)
            m_hat = m_new / tf.cast(c1, dtype)
            denom = tf.sqrt(v_new / tf.cast(c2, dtype)) + s.eps
            p.variable.assign_sub((s.lr * p.update_scale) * m_hat / denom)


def make_optimizer(spec: OptimizerSpec, params: list[NativeParam]) -> SGD | Adam:
    return {"sgd": SGD, "adam": Adam}[spec.name](spec, params)
