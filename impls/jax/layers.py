"""Feed-forward layers and activations in JAX on canonical layouts.

Canonical layouts are JAX's natural ones (x @ W with W (in, out); convolution
with dimension numbers NCHW/OIHW/NCHW), so parameters need no conversion.
Pure functions of arrays, traced under `jax.jit`; this module keeps the dtype
of its inputs and must not import `bench` or touch the host.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "identity": lambda z: z,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}

_CONV_DIMS = ("NCHW", "OIHW", "NCHW")


def activate(name: str, z: Array) -> Array:
    return ACTIVATIONS[name](z)


def dense(x: Array, weight: Array, bias: Array, activation: str) -> Array:
    return activate(activation, x @ weight + bias)


def conv2d(
    x: Array, weight: Array, bias: Array, stride: int, pad: int, activation: str
) -> Array:
    z = lax.conv_general_dilated(
        x,
        weight,
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=_CONV_DIMS,
    )
    return activate(activation, z + bias[None, :, None, None])


def maxpool2d(x: Array, size: int) -> Array:
    # VALID padding drops the rows and columns that do not fill a window, as the spec says.
    # A Python -inf init lets JAX recognise the max monoid and differentiate it.
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, size, size), (1, 1, size, size), "VALID")


def flatten(x: Array) -> Array:
    # Activations are NCHW throughout, so this is the canonical C, H, W order.
    return x.reshape(x.shape[0], -1)
