"""Feed-forward layers and activations in JAX, on canonical or channels-last images.

Dense takes x @ W with W (in, out), the canonical layout. Images run in one of
two layouts, chosen per program (`model.nhwc_layout`): canonical NCHW with
OIHW weights, or NHWC with HWIO weights (`nhwc=True`), the layout XLA's CPU
convolutions are fast in. Pure functions of arrays, traced under `jax.jit`;
this module keeps the dtype of its inputs and must not import `bench` or
touch the host.
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
_CONV_DIMS_NHWC = ("NHWC", "HWIO", "NHWC")


def activate(name: str, z: Array) -> Array:
    return ACTIVATIONS[name](z)


def dense(x: Array, weight: Array, bias: Array, activation: str) -> Array:
    return activate(activation, x @ weight + bias)


def conv2d(
    x: Array, weight: Array, bias: Array, stride: int, pad: int, activation: str,
    nhwc: bool = False,
) -> Array:
    """NCHW input and OIHW weight; with `nhwc`, NHWC input and HWIO weight."""
    z = lax.conv_general_dilated(
        x,
        weight,
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=_CONV_DIMS_NHWC if nhwc else _CONV_DIMS,
    )
    return activate(activation, z + (bias if nhwc else bias[None, :, None, None]))


def maxpool2d(x: Array, size: int, nhwc: bool = False) -> Array:
    # VALID padding drops the rows and columns that do not fill a window, as the spec says.
    # A Python -inf init lets JAX recognise the max monoid and differentiate it.
    window = (1, size, size, 1) if nhwc else (1, 1, size, size)
    return lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")


def flatten(x: Array, nhwc: bool = False) -> Array:
    """Flatten in the canonical C, H, W order. An NHWC batch is transposed back
    first, unless a Dense follows: that Dense takes its weight rows in H, W, C
    order instead (`model.to_native`) and the model calls `flatten_native`."""
    if nhwc and x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return x.reshape(x.shape[0], -1)


def flatten_native(x: Array) -> Array:
    """Flatten an NHWC batch in its own H, W, C order: a free reshape."""
    return x.reshape(x.shape[0], -1)
