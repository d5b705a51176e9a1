"""A `ModelSpec` as pure JAX functions of (params, x): forward and loss.

`params` is a dict keyed by canonical names in canonical layout (JAX needs no
native layout), so gradients from `jax.grad` are canonical already. The spec
is static Python data closed over at trace time. Nothing here leaves the
device or imports `bench`.
"""

from __future__ import annotations

import jax

from impls.jax.layers import conv2d, dense, flatten, maxpool2d
from impls.jax.losses import LOSSES
from impls.jax.recurrent import recurrent, recurrent_probed
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


def loss(spec: ModelSpec, params: Params, x: Array, y: Array, unroll: int = 1) -> Array:
    """The spec's scalar loss of the network output on a batch (x, y)."""
    return LOSSES[spec.loss](forward(spec, params, x, unroll), y)


def loss_probed(spec: ModelSpec, params: Params, probes: Params, x: Array, y: Array,
                unroll: int = 1) -> Array:
    """The loss with `probes[layer]` (N, T, H) added to each recurrent layer's hidden
    states; its gradient in `probes` is dL/dh_t (`Program.hidden_state_grads`)."""
    for layer in spec.layers:
        if isinstance(layer, Recurrent):
            n = layer.name
            x = recurrent_probed(
                x,
                params[f"{n}.w_ih"], params[f"{n}.w_hh"], params[f"{n}.b_ih"], params[f"{n}.b_hh"],
                layer.cell, layer.return_sequences, probes[n], unroll,
            )
        else:
            x = forward(ModelSpec(x.shape[1:], (layer,), spec.loss), params, x, unroll)
    return LOSSES[spec.loss](x, y)
