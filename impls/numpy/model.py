"""A whole ModelSpec in NumPy: forward, loss and hand-written gradients.

Pure functions over a `ModelSpec` and a dict of canonical parameters (NumPy
parameters are already in canonical layout). This is the reference every
other backend is compared with; bench's finite-difference check tests it in turn.
This module must not import any framework, nor `bench`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impls.base import piecewise_layers
from impls.numpy import layers, recurrent
from impls.numpy.losses import LOSSES
from tasks.spec import Conv2D, Dense, Flatten, Layer, MaxPool2D, ModelSpec, Recurrent

Params = dict[str, np.ndarray]


Masks = dict[str, np.ndarray]  # piecewise layer name -> ReLU mask (bool) or max-pool argmax


def _layer_forward(layer: Layer, params: Params, x: np.ndarray,
                   mask: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    n = layer.name
    if isinstance(layer, Dense):
        return layers.dense_forward(x, params[f"{n}.weight"], params[f"{n}.bias"],
                                    layer.activation, mask)
    if isinstance(layer, Conv2D):
        w, b = params[f"{n}.weight"], params[f"{n}.bias"]
        return layers.conv2d_forward(x, w, b, layer.stride, layer.pad, layer.activation, mask)
    if isinstance(layer, MaxPool2D):
        return layers.maxpool2d_forward(x, layer.size, mask)
    if isinstance(layer, Flatten):
        return layers.flatten_forward(x)
    if isinstance(layer, Recurrent):
        w = [params[f"{n}.{k}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
        return recurrent.recurrent_forward(x, *w, layer.cell, layer.return_sequences,
                                           layer.activation)
    raise TypeError(f"unknown layer {layer!r}")


# layer type -> backward(dout, cache, need_dx) -> (dx, {short name: grad})
_BACKWARD = {
    Dense: layers.dense_backward,
    Conv2D: layers.conv2d_backward,
    MaxPool2D: layers.maxpool2d_backward,
    Flatten: layers.flatten_backward,
    Recurrent: recurrent.recurrent_backward,
}


def forward(spec: ModelSpec, params: Params, x: np.ndarray) -> np.ndarray:
    """Model output (logits or predictions), shape (N, *spec.output_shape)."""
    for layer in spec.layers:
        x, _ = _layer_forward(layer, params, x)
    return x


def loss(spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The scalar loss only (used by finite differences)."""
    return LOSSES[spec.loss](forward(spec, params, x), y)[0]


def _run(spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray, need_dx: bool,
         masks: Masks | None = None):
    caches = []
    out = x
    for layer in spec.layers:
        out, cache = _layer_forward(layer, params, out, (masks or {}).get(layer.name))
        caches.append(cache)
    value, dout = LOSSES[spec.loss](out, y)
    grads: Params = {}
    for i in reversed(range(len(spec.layers))):
        layer = spec.layers[i]
        dout, layer_grads = _BACKWARD[type(layer)](dout, caches[i], need_dx or i > 0)
        for short, g in layer_grads.items():
            grads[f"{layer.name}.{short}"] = g
    # Canonical parameter order, whatever order the backward pass produced.
    ordered = {k: grads[k] for k in spec.param_shapes()}
    return value, ordered, dout


def loss_and_grads(
    spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray, masks: Masks | None = None
) -> tuple[np.ndarray, Params]:
    """Scalar loss (in the params' dtype) and the gradient of every parameter.

    With `masks` (from `masks_from_inputs`), every piecewise-linear layer they
    name is evaluated, forward and backward, on the linear piece the mask
    selects instead of the one its own input selects: the reference computed
    on another program's kinks.
    """
    value, grads, _ = _run(spec, params, x, y, need_dx=False, masks=masks)
    return value, grads


def forward_masked(spec: ModelSpec, params: Params, x: np.ndarray, masks: Masks) -> np.ndarray:
    """`forward` on the linear pieces `masks` select (see `loss_and_grads`)."""
    for layer in spec.layers:
        x, _ = _layer_forward(layer, params, x, masks.get(layer.name))
    return x


def piecewise_inputs(spec: ModelSpec, params: Params, x: np.ndarray) -> dict[str, np.ndarray]:
    """The ReLU pre-activations and max-pool inputs of one forward pass, by layer name
    (what `Program.piecewise_inputs` returns)."""
    kinds = piecewise_layers(spec)
    out: dict[str, np.ndarray] = {}
    for layer in spec.layers:
        if kinds.get(layer.name) == "maxpool":
            out[layer.name] = x
        x, cache = _layer_forward(layer, params, x)
        if kinds.get(layer.name) == "relu":
            out[layer.name] = cache[2] if isinstance(layer, Dense) else cache[6]  # z
    return out


def masks_from_inputs(spec: ModelSpec, inputs: dict[str, np.ndarray]) -> Masks:
    """Each piecewise layer's mask from its input: `z > 0` for a ReLU (the derivative
    at 0 taken as 0, as everywhere), the first window maximum for a max-pool."""
    masks: Masks = {}
    for layer in spec.layers:
        kind = piecewise_layers(spec).get(layer.name)
        if kind == "relu":
            masks[layer.name] = np.asarray(inputs[layer.name]) > 0
        elif kind == "maxpool":
            masks[layer.name] = layers.maxpool2d_argmax(np.asarray(inputs[layer.name]),
                                                        layer.size)
    return masks


def loss_grads_and_dx(
    spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, Params, np.ndarray]:
    """As `loss_and_grads`, plus the gradient w.r.t. the input `x`."""
    return _run(spec, params, x, y, need_dx=True)


def loss_and_state_grads(
    spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scalar loss and dL/dh_t of every recurrent layer, {layer name: (N, T, H)}.

    The reference for every backend's `Program.hidden_state_grads`: the values
    BPTT computes on its way back (`recurrent.recurrent_backward_states`).
    """
    caches = []
    out = x
    for layer in spec.layers:
        out, cache = _layer_forward(layer, params, out)
        caches.append(cache)
    value, dout = LOSSES[spec.loss](out, y)
    states: dict[str, np.ndarray] = {}
    for i in reversed(range(len(spec.layers))):
        layer = spec.layers[i]
        if isinstance(layer, Recurrent):
            dout, _, states[layer.name] = recurrent.recurrent_backward_states(
                dout, caches[i], i > 0)
        else:
            dout, _ = _BACKWARD[type(layer)](dout, caches[i], i > 0)
        if dout is None:
            break
    return value, {layer.name: states[layer.name] for layer in spec.layers
                   if isinstance(layer, Recurrent)}


def loss_probed(
    spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray, probes: dict[str, np.ndarray]
) -> np.ndarray:
    """The loss with `probes[layer]` (N, T, H) added to each recurrent layer's hidden
    states; its gradient in the probes at zero is `loss_and_state_grads`'s (used by
    finite differences, never by training)."""
    for layer in spec.layers:
        if isinstance(layer, Recurrent):
            w = [params[f"{layer.name}.{k}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
            x = recurrent.recurrent_forward_probed(x, *w, layer.cell, layer.return_sequences,
                                                   probes[layer.name], layer.activation)
        else:
            x, _ = _layer_forward(layer, params, x)
    return LOSSES[spec.loss](x, y)[0]
