"""A whole ModelSpec as one TensorFlow function of the native input, over native variables.

`build_model` makes one `tf.Variable` per native parameter from the canonical
NumPy arrays and chains the functions of `layers` and `recurrent` (or the
fused Keras layer, `recurrent.FusedRecurrent`) over them. Every variable is
recorded as a `NativeParam` with its way back to canonical form, in canonical
order. This is the one module that knows where native layouts differ from the
canonical ones, and it converts them once, here, in both directions:

- Images run NHWC inside: OIHW weights become HWIO, canonical NCHW batches
  become NHWC in `to_native_input` (which `put` uses), and image outputs go
  back to NCHW at the end of the model. A Flatten followed by a Dense is a
  plain reshape in H, W, C order; that Dense's weight rows are permuted to
  match once, here (`hwc_rows`), and its gradient permuted back.
- Keras LSTM gate order i,f,c,o equals canonical i,f,g,o; Keras GRU's z,r,h
  swaps the first two canonical blocks r,z,n; the GRU bias is (2, 3H) =
  [b_ih; b_hh].
- Keras SimpleRNN and LSTM keep ONE bias, standing for b_ih + b_hh. The loss
  depends only on that sum, so both canonical biases get its gradient. Under
  the reference rule both halves then carry identical optimiser state and
  move by the same update, so the sum moves by twice one update: its
  `update_scale` is 2, and reading it back splits the change from the start
  equally.

With a `compute_dtype` (the bf16 and fp16 precision modes) the variables stay
in the program's dtype and each layer reads them cast to the compute dtype
inside the traced function, so the tape's gradients and the optimiser stay in
the variables' dtype; Keras layers get the matching `mixed_*` dtype policy.

This module only builds: it runs no step and must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from impls.base import piecewise_layers
from impls.tensorflow import layers as L
from impls.tensorflow.losses import LOSSES
from impls.tensorflow.recurrent import FusedRecurrent, keras_module, recurrent, recurrent_probed
from tasks.spec import Conv2D, Dense, Flatten, Layer, MaxPool2D, ModelSpec, Recurrent

Apply = Callable[[tf.Tensor], tf.Tensor]
ToCanonical = Callable[[np.ndarray], dict[str, np.ndarray]]

_RECURRENT_PARAMS = ("w_ih", "w_hh", "b_ih", "b_hh")


@dataclass(frozen=True)
class NativeParam:
    """One native variable and its way back to canonical names and layout.

    `grad_to_canonical` maps the variable's gradient; `value_to_canonical` its
    current value (they differ only where one native variable stands for
    several canonical ones, like a Keras LSTM's single bias). The optimiser
    multiplies this variable's update by `update_scale` (see the module doc).
    """

    variable: tf.Variable
    grad_to_canonical: ToCanonical
    value_to_canonical: ToCanonical
    update_scale: float = 1.0


@dataclass(frozen=True)
class Model:
    """`forward(x) -> output` over native variables; `loss(output, y) -> scalar`."""

    forward: Apply
    loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    params: tuple[NativeParam, ...]
    #: `forward`, keeping each ReLU layer's pre-activation and each max-pool's
    #: input by layer name, in native (NHWC) layout (`Program.piecewise_inputs`)
    piecewise_inputs: Callable[[tf.Tensor], dict[str, tf.Tensor]] | None = None


def _same(name: str) -> ToCanonical:
    return lambda a: {name: a}


def native(var: tf.Variable, name: str, to_canonical: ToCanonical | None = None) -> NativeParam:
    """A variable that is exactly one canonical parameter (possibly re-laid-out)."""
    conv = to_canonical or _same(name)
    return NativeParam(var, conv, conv)


def variable(array: np.ndarray, dtype: tf.DType) -> tf.Variable:
    return tf.Variable(tf.constant(np.asarray(array), dtype=dtype), trainable=True)


# ------------------------------------------------------------- primitive-op layers
def _reader(compute: tf.DType | None) -> Callable[[tf.Variable], tf.Tensor]:
    """How a layer reads its variables: as they are, or cast to the compute dtype."""
    if compute is None:
        return lambda v: v
    return lambda v: tf.cast(v, compute)


def hwc_rows(chw: tuple[int, ...]) -> np.ndarray:
    """Row order that makes a Dense after an NHWC Flatten equal the canonical one.

    Canonical Flatten orders features C, H, W; a plain reshape of an NHWC batch
    orders them H, W, C. Taking the Dense weight's rows in this order (once, at
    build) lets the model flatten with a free reshape instead of transposing
    every batch; `weight[order]` is the native weight, and native gradients go
    back with `np.argsort(order)`.
    """
    c, h, w = chw
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def _dense_rows(var: tf.Variable, name: str, order: np.ndarray) -> NativeParam:
    back = np.argsort(order)
    return native(var, name, lambda a: {name: a[back]})


def _layer(layer: Layer, params: dict[str, np.ndarray], dtype: tf.DType,
           row_order: np.ndarray | None = None, compute: tf.DType | None = None):
    """(apply, native params) for one layer built from `layers` / `recurrent`.

    `row_order`: for a Dense right after an NHWC Flatten, its weight rows in
    native order (`hwc_rows`); `compute`: the dtype the layer reads its
    variables in (a precision mode), None for the variables' own."""
    n = layer.name
    r = _reader(compute)
    if isinstance(layer, Dense):
        name = f"{n}.weight"
        weight = params[name] if row_order is None else params[name][row_order]
        w = variable(weight, dtype)
        b = variable(params[f"{n}.bias"], dtype)
        apply = lambda x: L.dense(x, r(w), r(b), layer.activation)  # noqa: E731
        w_native = native(w, name) if row_order is None else _dense_rows(w, name, row_order)
        return apply, [w_native, native(b, f"{n}.bias")]
    if isinstance(layer, Conv2D):
        name = f"{n}.weight"
        w = variable(params[name].transpose(2, 3, 1, 0), dtype)  # OIHW -> HWIO
        b = variable(params[f"{n}.bias"], dtype)
        apply = lambda x: L.conv2d(x, r(w), r(b), layer.stride, layer.pad,  # noqa: E731
                                   layer.activation)
        to_oihw = lambda a: {name: a.transpose(3, 2, 0, 1)}  # noqa: E731
        return apply, [native(w, name, to_oihw), native(b, f"{n}.bias")]
    if isinstance(layer, MaxPool2D):
        return (lambda x: L.maxpool2d(x, layer.size)), []
    if isinstance(layer, Flatten):
        return L.flatten, []
    if isinstance(layer, Recurrent):
        names = [f"{n}.{k}" for k in _RECURRENT_PARAMS]
        ws = [variable(params[k], dtype) for k in names]
        apply = lambda x: recurrent(x, *map(r, ws), layer.cell,  # noqa: E731
                                    layer.return_sequences, layer.activation)
        return apply, [native(v, k) for v, k in zip(ws, names, strict=True)]
    raise TypeError(f"unknown layer {layer!r}")


# ------------------------------------------------------------- Keras fused layers
def _swap_rz(a: np.ndarray) -> np.ndarray:
    """Swap the first two of three gate blocks on the last axis: r,z,n <-> z,r,n."""
    r, z, n = np.split(a, 3, axis=-1)
    return np.concatenate([z, r, n], axis=-1)


def _shared_bias(var: tf.Variable, b_ih: np.ndarray, b_hh: np.ndarray, name: str) -> NativeParam:
    start = var.numpy()
    ih, hh = f"{name}.b_ih", f"{name}.b_hh"

    def value(a: np.ndarray) -> dict[str, np.ndarray]:
        half = (a - start) / 2
        return {ih: b_ih.astype(a.dtype) + half, hh: b_hh.astype(a.dtype) + half}

    return NativeParam(var, lambda g: {ih: g, hh: g.copy()}, value, update_scale=2.0)


def _fused_recurrent(
    layer: Recurrent, in_shape: tuple[int, ...], params: dict[str, np.ndarray], dtype: tf.DType,
    compute: tf.DType | None = None,
):
    """(apply, native params) for one recurrent layer as a Keras layer."""
    n = layer.name
    w_ih, w_hh, b_ih, b_hh = (params[f"{n}.{k}"] for k in _RECURRENT_PARAMS)
    if layer.cell == "gru":
        weights = [_swap_rz(w_ih), _swap_rz(w_hh), np.stack([_swap_rz(b_ih), _swap_rz(b_hh)])]
    else:
        weights = [w_ih, w_hh, b_ih + b_hh]
    policy = None if compute is None else f"mixed_{compute.name}"  # Keras' own mixed precision
    fused = FusedRecurrent(layer, in_shape, weights, dtype, policy=policy)
    kernel, recurrent_kernel, bias = fused.parameters()
    if layer.cell == "gru":

        def gru_bias(a: np.ndarray) -> dict[str, np.ndarray]:
            return {f"{n}.b_ih": _swap_rz(a[0]), f"{n}.b_hh": _swap_rz(a[1])}

        natives = [
            native(kernel, f"{n}.w_ih", lambda a: {f"{n}.w_ih": _swap_rz(a)}),
            native(recurrent_kernel, f"{n}.w_hh", lambda a: {f"{n}.w_hh": _swap_rz(a)}),
            NativeParam(bias, gru_bias, gru_bias),
        ]
    else:
        natives = [
            native(kernel, f"{n}.w_ih"),
            native(recurrent_kernel, f"{n}.w_hh"),
            _shared_bias(bias, b_ih, b_hh, n),
        ]
    return fused, natives


# ------------------------------------------------------------- Keras layers throughout
def _keras_act(name: str) -> str | None:
    return None if name == "identity" else name


def _keras_layer(layer: Layer, in_shape: tuple[int, ...], params: dict[str, np.ndarray],
                 dtype: tf.DType, row_order: np.ndarray | None):
    """(apply, native params) for one layer as a Keras 3 layer ("keras_layers" variants).

    Keras' Dense kernel is (in, out) and its Conv2D kernel HWIO on NHWC input, the
    layouts the primitive-op layers use too; recurrent layers are `FusedRecurrent`.
    """
    keras = keras_module()
    n, kw = layer.name, dict(dtype=dtype.name, name=layer.name)
    if isinstance(layer, Recurrent):
        return _fused_recurrent(layer, in_shape, params, dtype)
    if isinstance(layer, MaxPool2D):
        return keras.layers.MaxPooling2D(layer.size, **kw), []
    if isinstance(layer, Flatten):
        # only reached when no Dense follows an image; else the reshape below
        return keras.layers.Flatten(**kw), []
    if isinstance(layer, Dense):
        k = keras.layers.Dense(layer.units, activation=_keras_act(layer.activation), **kw)
        k.build((None, in_shape[0]))
        weight = params[f"{n}.weight"]
        kernel = weight if row_order is None else weight[row_order]
        natives_of = (lambda v: native(v, f"{n}.weight")) if row_order is None else (
            lambda v: _dense_rows(v, f"{n}.weight", row_order))
    elif isinstance(layer, Conv2D):
        k = keras.layers.Conv2D(layer.filters, layer.kernel, strides=layer.stride,
                                padding="same" if layer.pad else "valid",
                                activation=_keras_act(layer.activation), **kw)
        k.build((None, *native_input_shape_of(in_shape)))
        kernel = params[f"{n}.weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
        name = f"{n}.weight"
        natives_of = lambda v: native(v, name, lambda a: {name: a.transpose(3, 2, 0, 1)})  # noqa: E731
    else:
        raise TypeError(f"unknown layer {layer!r}")
    k.kernel.value.assign(kernel)
    k.bias.value.assign(params[f"{n}.bias"])
    return k, [natives_of(k.kernel.value), native(k.bias.value, f"{n}.bias")]


def native_input_shape_of(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A canonical per-example shape in native layout: (C, H, W) -> (H, W, C)."""
    return (*shape[1:], shape[0]) if is_image(shape) else tuple(shape)


# ------------------------------------------------------------------ the model
def is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def to_native_input(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """Canonical NCHW image batches -> NHWC; anything else (targets too) unchanged."""
    return x.transpose(0, 2, 3, 1) if is_image(spec.input_shape) and x.ndim == 4 else x


def build_model(
    spec: ModelSpec, params: dict[str, np.ndarray], dtype: tf.DType, keras_rnn: bool,
    keras_layers: bool = False,
    compute_dtype: tf.DType | None = None,
) -> Model:
    """Native variables from canonical `params` (converted once, here) and the model function.

    `keras_rnn`: recurrent layers are Keras layers; `keras_layers`: every layer is.
    With `compute_dtype`, the model casts its input and reads its variables in that
    dtype and returns its output in `dtype`.
    """
    applies, natives, pieces = [], [], []
    shapes = spec.shapes()
    row_order = None  # set by an image Flatten whose order the next Dense takes over
    for i, (layer, in_shape) in enumerate(zip(spec.layers, shapes, strict=False)):
        nxt = spec.layers[i + 1] if i + 1 < len(spec.layers) else None
        if isinstance(layer, Flatten) and is_image(in_shape) and isinstance(nxt, Dense):
            row_order = hwc_rows(in_shape)
            apply, layer_params = L.flatten_native, []
        elif keras_layers:
            apply, layer_params = _keras_layer(layer, in_shape, params, dtype, row_order)
            row_order = None
        elif keras_rnn and isinstance(layer, Recurrent):
            apply, layer_params = _fused_recurrent(layer, in_shape, params, dtype, compute_dtype)
        else:
            apply, layer_params = _layer(layer, params, dtype, row_order, compute_dtype)
            row_order = None
        applies.append(apply)
        natives.extend(layer_params)
        pieces.append((layer, apply, [p.variable for p in layer_params]))
    nchw_out = is_image(spec.output_shape)

    def model(x: tf.Tensor) -> tf.Tensor:
        if compute_dtype is not None:
            x = tf.cast(x, compute_dtype)
        for apply in applies:
            x = apply(x)
        if compute_dtype is not None:
            x = tf.cast(x, dtype)  # the loss is taken in the variables' dtype
        return tf.transpose(x, (0, 3, 1, 2)) if nchw_out else x

    kinds = piecewise_layers(spec)

    def piecewise(x: tf.Tensor) -> dict[str, tf.Tensor]:
        out: dict[str, tf.Tensor] = {}
        for layer, apply, variables in pieces:
            kind = kinds.get(layer.name)
            if kind == "relu":
                if isinstance(layer, Dense):
                    z = L.dense(x, *variables, "identity")
                else:
                    z = L.conv2d(x, *variables, layer.stride, layer.pad, "identity")
                out[layer.name] = z
                x = L.activate("relu", z)
                continue
            if kind == "maxpool":
                out[layer.name] = x
            x = apply(x)
        return out

    # keras_layers too: a Keras Dense or Conv2D holds its kernel and bias as the
    # tf.Variables `pieces` lists, so its pre-activation is the same matmul or
    # convolution plus bias, without the activation Keras fuses into the layer
    return Model(model, LOSSES[spec.loss], tuple(natives), piecewise)


# native variables per layer type in a primitive-op model (see `_layer`)
_VARIABLE_COUNT = {Dense: 2, Conv2D: 2, Recurrent: 4}


def loss_probed(spec: ModelSpec, model: Model):
    """`loss(x, y, probes)` of a primitive-op model, with `probes[layer]` (N, T, H)
    added to each recurrent layer's hidden states; its gradient in the probes is
    dL/dh_t (`Program.hidden_state_grads`). Uses the model's own variables, in
    the order `build_model` made them. Not for models with Keras layers."""
    variables = [p.variable for p in model.params]
    nchw_out = is_image(spec.output_shape)

    def loss(x: tf.Tensor, y: tf.Tensor, probes: dict[str, tf.Tensor]) -> tf.Tensor:
        index = 0
        for layer in spec.layers:
            count = _VARIABLE_COUNT.get(type(layer), 0)
            vs = variables[index : index + count]
            index += count
            if isinstance(layer, Recurrent):
                x = recurrent_probed(x, *vs, layer.cell, layer.return_sequences,
                                     probes[layer.name], layer.activation)
            elif isinstance(layer, Dense):
                x = L.dense(x, *vs, layer.activation)
            elif isinstance(layer, Conv2D):
                x = L.conv2d(x, *vs, layer.stride, layer.pad, layer.activation)
            elif isinstance(layer, MaxPool2D):
                x = L.maxpool2d(x, layer.size)
            else:
                x = L.flatten(x)
        if nchw_out:
            x = tf.transpose(x, (0, 3, 1, 2))
        return model.loss(x, y)

    return loss
