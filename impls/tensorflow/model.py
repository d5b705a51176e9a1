"""A whole ModelSpec as one TensorFlow function of the native input, over native variables.

`build_model` makes one `tf.Variable` per native parameter from the canonical
NumPy arrays and chains the functions of `layers` and `recurrent` (or the
fused Keras layer, `recurrent.FusedRecurrent`) over them. Every variable is
recorded as a `NativeParam` with its way back to canonical form, in canonical
order. This is the one module that knows where native layouts differ from the
canonical ones, and it converts them once, here, in both directions:

- Images run NHWC inside: OIHW weights become HWIO, canonical NCHW batches
  become NHWC in `to_native_input` (which `put` uses), and image outputs go
  back to NCHW at the end of the model.
- Keras LSTM gate order i,f,c,o equals canonical i,f,g,o; Keras GRU's z,r,h
  swaps the first two canonical blocks r,z,n; the GRU bias is (2, 3H) =
  [b_ih; b_hh].
- Keras SimpleRNN and LSTM keep ONE bias, standing for b_ih + b_hh. The loss
  depends only on that sum, so both canonical biases get its gradient. Under
  the reference rule both halves then carry identical optimiser state and
  move by the same update, so the sum moves by twice one update: its
  `update_scale` is 2, and reading it back splits the change from the start
  equally.

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
from impls.tensorflow.recurrent import FusedRecurrent, recurrent
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
    """`apply(x) -> output` over native variables; `loss(output, y) -> scalar`."""

    apply: Apply
    loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    params: tuple[NativeParam, ...]
    #: `apply`, keeping each ReLU layer's pre-activation and each max-pool's
    #: input by layer name, in native (NHWC) layout (`Program.piecewise_inputs`)
    piecewise: Callable[[tf.Tensor], dict[str, tf.Tensor]] | None = None


def _same(name: str) -> ToCanonical:
    return lambda a: {name: a}


def native(var: tf.Variable, name: str, to_canonical: ToCanonical | None = None) -> NativeParam:
    """A variable that is exactly one canonical parameter (possibly re-laid-out)."""
    conv = to_canonical or _same(name)
    return NativeParam(var, conv, conv)


def variable(array: np.ndarray, dtype: tf.DType) -> tf.Variable:
    return tf.Variable(tf.constant(np.asarray(array), dtype=dtype), trainable=True)


# ------------------------------------------------------------- primitive-op layers
def _layer(layer: Layer, params: dict[str, np.ndarray], dtype: tf.DType):
    """(apply, native params) for one layer built from `layers` / `recurrent`."""
    n = layer.name
    if isinstance(layer, Dense):
        w = variable(params[f"{n}.weight"], dtype)
        b = variable(params[f"{n}.bias"], dtype)
        apply = lambda x: L.dense(x, w, b, layer.activation)  # noqa: E731
        return apply, [native(w, f"{n}.weight"), native(b, f"{n}.bias")]
    if isinstance(layer, Conv2D):
        name = f"{n}.weight"
        w = variable(params[name].transpose(2, 3, 1, 0), dtype)  # OIHW -> HWIO
        b = variable(params[f"{n}.bias"], dtype)
        apply = lambda x: L.conv2d(x, w, b, layer.stride, layer.pad, layer.activation)  # noqa: E731
        to_oihw = lambda a: {name: a.transpose(3, 2, 0, 1)}  # noqa: E731
        return apply, [native(w, name, to_oihw), native(b, f"{n}.bias")]
    if isinstance(layer, MaxPool2D):
        return (lambda x: L.maxpool2d(x, layer.size)), []
    if isinstance(layer, Flatten):
        return L.flatten, []
    if isinstance(layer, Recurrent):
        names = [f"{n}.{k}" for k in _RECURRENT_PARAMS]
        ws = [variable(params[k], dtype) for k in names]
        apply = lambda x: recurrent(x, *ws, layer.cell, layer.return_sequences)  # noqa: E731
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
    layer: Recurrent, in_shape: tuple[int, ...], params: dict[str, np.ndarray], dtype: tf.DType
):
    """(apply, native params) for one recurrent layer as a Keras layer."""
    n = layer.name
    w_ih, w_hh, b_ih, b_hh = (params[f"{n}.{k}"] for k in _RECURRENT_PARAMS)
    if layer.cell == "gru":
        weights = [_swap_rz(w_ih), _swap_rz(w_hh), np.stack([_swap_rz(b_ih), _swap_rz(b_hh)])]
    else:
        weights = [w_ih, w_hh, b_ih + b_hh]
    fused = FusedRecurrent(layer, in_shape, weights, dtype)
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


# ------------------------------------------------------------------ the model
def is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def to_native_input(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """Canonical NCHW image batches -> NHWC; anything else (targets too) unchanged."""
    return x.transpose(0, 2, 3, 1) if is_image(spec.input_shape) and x.ndim == 4 else x


def native_input_shape(spec: ModelSpec) -> tuple[int, ...]:
    c_h_w = tuple(spec.input_shape)
    return (*c_h_w[1:], c_h_w[0]) if is_image(c_h_w) else c_h_w


def build_model(
    spec: ModelSpec, params: dict[str, np.ndarray], dtype: tf.DType, keras_rnn: bool
) -> Model:
    """Native variables from canonical `params` (converted once, here) and the model function."""
    applies, natives, pieces = [], [], []
    for layer, in_shape in zip(spec.layers, spec.shapes(), strict=False):
        if keras_rnn and isinstance(layer, Recurrent):
            apply, layer_params = _fused_recurrent(layer, in_shape, params, dtype)
        else:
            apply, layer_params = _layer(layer, params, dtype)
        applies.append(apply)
        natives.extend(layer_params)
        pieces.append((layer, apply, [p.variable for p in layer_params]))
    nchw_out = is_image(spec.output_shape)

    def model(x: tf.Tensor) -> tf.Tensor:
        for apply in applies:
            x = apply(x)
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

    return Model(model, LOSSES[spec.loss], tuple(natives), piecewise)
