"""A `ModelSpec` as pure JAX functions of (params, x): forward and loss.

`params` is a dict keyed by canonical names. JAX's natural layouts are the
canonical ones, except for images on CPU: there the primitive-op program runs
channels-last (`nhwc_layout`), the layout XLA's CPU convolutions are fast in
(in NCHW/OIHW XLA:CPU measured 1.3-3x slower on the standard CNN forward). Its
parameters are then held in native layout, converted once at build
(`to_native`: Conv2D OIHW -> HWIO, and a Dense after an image Flatten takes
its weight rows in H, W, C order so the flatten is a free reshape) and back
for gradients and values (`to_canonical`); its batches are put NHWC
(`nhwc_input`). Otherwise params and gradients are canonical as they are.
The spec is static Python data closed over at trace time. Nothing here leaves
the device or imports `bench`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import jax
import numpy as np

from impls.base import piecewise_layers
from impls.jax.layers import activate, conv2d, dense, flatten, flatten_native, maxpool2d
from impls.jax.losses import LOSSES
from impls.jax.recurrent import recurrent, recurrent_probed
from tasks.spec import Conv2D, Dense, Flatten, MaxPool2D, ModelSpec, Recurrent

Array = jax.Array
Params = dict[str, Array]


# ------------------------------------------------------- channels-last images on CPU
#: a layout a build asked for ("nchw" or "nhwc"; the `layout` speed setting,
#: `impls.settings`), set only while `forced_layout` builds one program
_FORCED_LAYOUT: list[str] = []


@contextlib.contextmanager
def forced_layout(layout: str) -> Iterator[None]:
    """Image programs built inside the block run `layout` ("nchw" or "nhwc") whatever
    the platform's default (`nhwc_layout`)."""
    _FORCED_LAYOUT.append(layout)
    try:
        yield
    finally:
        _FORCED_LAYOUT.pop()


def nhwc_layout(spec: ModelSpec, platform: str) -> bool:
    """Whether the primitive-op program for `spec` runs its images NHWC: on CPU, for
    image models (without recurrent layers). XLA:CPU's fast convolution path wants
    NHWC/HWIO and otherwise transposes around it or runs a slower loop (jax#12868,
    jax#23783). Other platforms keep the canonical NCHW (XLA:GPU chooses its own
    convolution layouts). Inside `forced_layout`, image models take the layout asked."""
    image = (len(spec.input_shape) == 3
             and not any(isinstance(layer, Recurrent) for layer in spec.layers))
    if _FORCED_LAYOUT:
        return image and _FORCED_LAYOUT[-1] == "nhwc"
    return platform == "cpu" and image


def _native_flattens(spec: ModelSpec) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Image Flattens followed by a Dense: flatten name -> (dense name, its (C, H, W))."""
    found = {}
    layers, shapes = spec.layers, spec.shapes()
    for i, (layer, shape) in enumerate(zip(layers, shapes, strict=False)):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, Flatten) and len(shape) == 3 and isinstance(nxt, Dense):
            found[layer.name] = (nxt.name, tuple(shape))
    return found


def _relayouts(spec: ModelSpec) -> dict[str, tuple]:
    """Parameter name -> (to native, to canonical) NumPy functions, for those that differ."""
    out: dict[str, tuple] = {}
    for layer in spec.layers:
        if isinstance(layer, Conv2D):
            out[f"{layer.name}.weight"] = (lambda a: a.transpose(2, 3, 1, 0),  # OIHW -> HWIO
                                           lambda a: a.transpose(3, 2, 0, 1))
    for dense_name, (c, h, w) in _native_flattens(spec).values():
        out[f"{dense_name}.weight"] = (
            lambda a, c=c, h=h, w=w: a.reshape(c, h, w, -1).transpose(1, 2, 0, 3)
            .reshape(c * h * w, -1),
            lambda a, c=c, h=h, w=w: a.reshape(h, w, c, -1).transpose(2, 0, 1, 3)
            .reshape(c * h * w, -1))
    return out


def to_native(spec: ModelSpec, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical arrays -> the NHWC program's layout (once, at build)."""
    moves = _relayouts(spec)
    return {k: np.ascontiguousarray(moves[k][0](np.asarray(v))) if k in moves else v
            for k, v in params.items()}


def to_canonical(spec: ModelSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The NHWC program's arrays (values or gradients) -> canonical layout."""
    moves = _relayouts(spec)
    return {k: np.ascontiguousarray(moves[k][1](v)) if k in moves else v
            for k, v in arrays.items()}


def nhwc_input(spec: ModelSpec, x):
    """A canonical NCHW image batch as NHWC; anything else unchanged."""
    return x.transpose(0, 2, 3, 1) if len(spec.input_shape) == 3 and x.ndim == 4 else x


def _to_nchw(x: Array) -> Array:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def forward(spec: ModelSpec, params: Params, x: Array, unroll: int = 1,
            nhwc: bool = False) -> Array:
    """Network output (logits or predictions) for a batch `x`. With `nhwc`, images
    are NHWC and `params` in `to_native` layout; an image output comes back NCHW."""
    native_flattens = _native_flattens(spec) if nhwc else {}
    for layer in spec.layers:
        n = layer.name
        if isinstance(layer, Dense):
            x = dense(x, params[f"{n}.weight"], params[f"{n}.bias"], layer.activation)
        elif isinstance(layer, Conv2D):
            x = conv2d(
                x, params[f"{n}.weight"], params[f"{n}.bias"],
                layer.stride, layer.pad, layer.activation, nhwc,
            )
        elif isinstance(layer, MaxPool2D):
            x = maxpool2d(x, layer.size, nhwc)
        elif isinstance(layer, Flatten):
            x = flatten_native(x) if n in native_flattens else flatten(x, nhwc)
        elif isinstance(layer, Recurrent):
            x = recurrent(
                x,
                params[f"{n}.w_ih"], params[f"{n}.w_hh"], params[f"{n}.b_ih"], params[f"{n}.b_hh"],
                layer.cell, layer.return_sequences, unroll, layer.activation,
            )
        else:
            raise TypeError(f"unknown layer {layer!r}")
    return _to_nchw(x) if nhwc else x


def piecewise_inputs(
    spec: ModelSpec, params: Params, x: Array, unroll: int = 1, nhwc: bool = False
) -> dict[str, Array]:
    """`forward`, keeping each ReLU layer's pre-activation and each max-pool's input
    by layer name, images in canonical NCHW (computed in the program's own layout)."""
    kinds = piecewise_layers(spec)
    native_flattens = _native_flattens(spec) if nhwc else {}
    out: dict[str, Array] = {}
    for layer, shape in zip(spec.layers, spec.shapes(), strict=False):
        n, kind = layer.name, kinds.get(layer.name)
        if isinstance(layer, Dense):
            z = dense(x, params[f"{n}.weight"], params[f"{n}.bias"], "identity")
        elif isinstance(layer, Conv2D):
            z = conv2d(x, params[f"{n}.weight"], params[f"{n}.bias"], layer.stride, layer.pad,
                       "identity", nhwc)
        elif isinstance(layer, MaxPool2D):
            out[n] = _to_nchw(x) if nhwc else x
            x = maxpool2d(x, layer.size, nhwc)
            continue
        elif isinstance(layer, Flatten):
            x = flatten_native(x) if n in native_flattens else flatten(x, nhwc)
            continue
        else:  # recurrent layers have no kinks: the forward's own step
            x = forward(replace(spec, input_shape=shape, layers=(layer,)), params, x, unroll)
            continue
        if kind == "relu":
            out[n] = _to_nchw(z) if nhwc else z
        x = activate(layer.activation, z)
    return out


def loss(spec: ModelSpec, params: Params, x: Array, y: Array, unroll: int = 1,
         nhwc: bool = False) -> Array:
    """The spec's scalar loss of the network output on a batch (x, y)."""
    return LOSSES[spec.loss](forward(spec, params, x, unroll, nhwc), y)


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
                layer.cell, layer.return_sequences, probes[n], unroll, layer.activation,
            )
        else:
            x = forward(ModelSpec(x.shape[1:], (layer,), spec.loss), params, x, unroll)
    return LOSSES[spec.loss](x, y)


# ------------------------------------------------------------- Flax linen ("flax" variant)
SOWN = "piecewise:"  # sown names: a submodule already owns the bare layer name
def flax_module(spec: ModelSpec, dtype=None, record: bool = False):
    """The spec as a Flax linen module, each layer the Flax layer users write.

    nn.Dense, nn.Conv on NHWC (Flax's layout; `flax_input` converts a canonical
    batch once, in `put`), nn.max_pool, a reshape for Flatten and nn.RNN over
    the cell of `recurrent.flax_cell`. Layers are named as in the spec, so
    `flax_params` can fill the tree from canonical arrays. With `record`, the
    module also sows each ReLU layer's pre-activation and each max-pool's
    input into its "intermediates" collection (`flax_piecewise_inputs`); the
    timed module never records.
    """
    import flax.linen as nn

    from impls.jax.layers import ACTIVATIONS
    from impls.jax.recurrent import flax_cell

    kinds = piecewise_layers(spec) if record else {}

    class Net(nn.Module):
        @nn.compact
        def __call__(self, h):
            for layer in spec.layers:
                kind = kinds.get(layer.name)
                if isinstance(layer, Dense | Conv2D):
                    if isinstance(layer, Dense):
                        op = nn.Dense(layer.units, name=layer.name)
                    else:
                        op = nn.Conv(layer.filters, (layer.kernel,) * 2, strides=layer.stride,
                                     padding="SAME" if layer.pad else "VALID", name=layer.name)
                    z = op(h)
                    if kind == "relu":
                        self.sow("intermediates", SOWN + layer.name, z)
                    h = ACTIVATIONS[layer.activation](z)
                elif isinstance(layer, MaxPool2D):
                    if kind == "maxpool":
                        self.sow("intermediates", SOWN + layer.name, h)
                    h = nn.max_pool(h, (layer.size,) * 2, strides=(layer.size,) * 2)
                elif isinstance(layer, Flatten):
                    h = h.reshape((h.shape[0], -1))  # H, W, C order: see flax_params
                elif isinstance(layer, Recurrent):
                    rnn = nn.RNN(flax_cell(layer.cell, layer.hidden, dtype, layer.activation),
                                 return_carry=True, name=layer.name)
                    carry, outs = rnn(h)
                    last = carry[1] if layer.cell == "lstm" else carry  # LSTM carry: (c, h)
                    h = outs if layer.return_sequences else last
                else:
                    raise TypeError(f"unknown layer {layer!r}")
            return h

    return Net()


def flax_params(spec: ModelSpec, params: Params) -> dict:
    """Canonical params as the Flax module's parameter tree, inside the trace.

    Conv kernels OIHW -> HWIO; a Dense after an image Flatten takes its rows in
    H, W, C order (Flax flattens NHWC); recurrent weights per `flax_cell_params`.
    Being traced, the gradient flows back to the canonical arrays, so gradients
    and the optimiser stay canonical.
    """
    import jax.numpy as jnp

    from impls.jax.recurrent import flax_cell_params

    tree: dict = {}
    shapes = spec.shapes()
    order = None
    for layer, in_shape in zip(spec.layers, shapes, strict=False):
        n = layer.name
        if isinstance(layer, Dense):
            w = params[f"{n}.weight"]
            tree[n] = {"kernel": w if order is None else w[order], "bias": params[f"{n}.bias"]}
            order = None
        elif isinstance(layer, Conv2D):
            tree[n] = {"kernel": jnp.transpose(params[f"{n}.weight"], (2, 3, 1, 0)),
                       "bias": params[f"{n}.bias"]}
        elif isinstance(layer, Flatten) and len(in_shape) == 3:
            c, h, w = in_shape
            order = jnp.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
        elif isinstance(layer, Recurrent):
            tree[n] = {"cell": flax_cell_params(
                layer.cell, *(params[f"{n}.{k}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")))}
    return {"params": tree}


flax_input = nhwc_input  # Flax's layout is NHWC too


def flax_forward(spec: ModelSpec, params: Params, x: Array, module=None) -> Array:
    """The Flax module's output for a native (NHWC) batch from canonical `params`."""
    out = (module or flax_module(spec)).apply(flax_params(spec, params), x)
    return out.transpose(0, 3, 1, 2) if len(spec.output_shape) == 3 else out


def flax_piecewise_inputs(spec: ModelSpec, params: Params, x: Array, module) -> dict[str, Array]:
    """`piecewise_inputs` for the Flax module: what a `record=True` module sowed,
    by layer name, images back in canonical NCHW."""
    _, state = module.apply(flax_params(spec, params), x, mutable=["intermediates"])
    sown = state["intermediates"]
    # sow keeps a tuple of every value sown under a name: one call, one value
    return {k.removeprefix(SOWN): v[0].transpose(0, 3, 1, 2) if v[0].ndim == 4 else v[0]
            for k, v in sown.items()}


def flax_loss(spec: ModelSpec, params: Params, x: Array, y: Array, module=None) -> Array:
    return LOSSES[spec.loss](flax_forward(spec, params, x, module), y)
