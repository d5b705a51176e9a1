"""A `ModelSpec` as pure JAX functions of (params, x): forward and loss.

`params` is a dict keyed by canonical names in canonical layout (JAX needs no
native layout), so gradients from `jax.grad` are canonical already. The spec
is static Python data closed over at trace time. Nothing here leaves the
device or imports `bench`.
"""

from __future__ import annotations

from dataclasses import replace

import jax

from impls.base import piecewise_layers
from impls.jax.layers import activate, conv2d, dense, flatten, maxpool2d
from impls.jax.losses import LOSSES
from impls.jax.recurrent import recurrent
from tasks.spec import Conv2D, Dense, Flatten, MaxPool2D, ModelSpec, Recurrent

Array = jax.Array
Params = dict[str, Array]


def forward(spec: ModelSpec, params: Params, x: Array, unroll: int = 1) -> Array:
    """Network output (logits or predictions) for a batch `x`."""
    for layer in spec.layers:
        n = layer.name
        if isinstance(layer, Dense):
            x = dense(x, params[f"{n}.weight"], params[f"{n}.bias"], layer.activation)
        elif isinstance(layer, Conv2D):
            x = conv2d(
                x, params[f"{n}.weight"], params[f"{n}.bias"],
                layer.stride, layer.pad, layer.activation,
            )
        elif isinstance(layer, MaxPool2D):
            x = maxpool2d(x, layer.size)
        elif isinstance(layer, Flatten):
            x = flatten(x)
        elif isinstance(layer, Recurrent):
            x = recurrent(
                x,
                params[f"{n}.w_ih"], params[f"{n}.w_hh"], params[f"{n}.b_ih"], params[f"{n}.b_hh"],
                layer.cell, layer.return_sequences, unroll,
            )
        else:
            raise TypeError(f"unknown layer {layer!r}")
    return x


def piecewise_inputs(
    spec: ModelSpec, params: Params, x: Array, unroll: int = 1
) -> dict[str, Array]:
    """`forward`, keeping each ReLU layer's pre-activation and each max-pool's input
    by layer name (JAX's layouts are canonical)."""
    kinds = piecewise_layers(spec)
    out: dict[str, Array] = {}
    for layer, shape in zip(spec.layers, spec.shapes(), strict=False):
        n, kind = layer.name, kinds.get(layer.name)
        if isinstance(layer, Dense):
            z = dense(x, params[f"{n}.weight"], params[f"{n}.bias"], "identity")
        elif isinstance(layer, Conv2D):
            z = conv2d(x, params[f"{n}.weight"], params[f"{n}.bias"], layer.stride, layer.pad,
                       "identity")
        elif isinstance(layer, MaxPool2D):
            out[n] = x
            x = maxpool2d(x, layer.size)
            continue
        else:  # flatten and recurrent layers have no kinks: the forward's own step
            x = forward(replace(spec, input_shape=shape, layers=(layer,)), params, x, unroll)
            continue
        if kind == "relu":
            out[n] = z
        x = activate(layer.activation, z)
    return out


def loss(spec: ModelSpec, params: Params, x: Array, y: Array, unroll: int = 1) -> Array:
    """The spec's scalar loss of the network output on a batch (x, y)."""
    return LOSSES[spec.loss](forward(spec, params, x, unroll), y)
