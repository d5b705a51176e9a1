"""Losses of the JAX backend on (model output, target), reduced as the reference does.

`mse` is the mean over all elements; `softmax_cross_entropy` takes logits
(N, K) and integer labels (N,) and averages over the batch. Pure functions
traced under `jax.jit`; `jax.grad` supplies the gradient. This module must
not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def mse(pred: Array, y: Array) -> Array:
    return jnp.mean((pred - y) ** 2)


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))


# name -> f(pred, y) -> scalar loss
LOSSES: dict[str, Callable[[Array, Array], Array]] = {
    "mse": mse,
    "softmax_cross_entropy": softmax_cross_entropy,
}
