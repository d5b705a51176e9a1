"""A whole ModelSpec as one TensorFlow function of the native input.

Chains the layer builders of `layers`, `recurrent` (primitive ops) or `fused`
(Keras layers) and records every native variable with its way back to
canonical form, in canonical order. Images are NHWC inside (see `layers`);
`input_layout` is the one place that says so, for `put`. This module only
builds: it runs no step and must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from impls.tensorflow.fused import keras_recurrent
from impls.tensorflow.layers import NativeParam, feedforward, loss_fn
from impls.tensorflow.recurrent import recurrent
from tasks.spec import ModelSpec, Recurrent


@dataclass(frozen=True)
class Model:
    """`apply(x) -> output` over native variables; `loss(output, y) -> scalar`."""

    apply: Callable[[tf.Tensor], tf.Tensor]
    loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    params: tuple[NativeParam, ...]


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
    applies, natives = [], []
    for layer, in_shape in zip(spec.layers, spec.shapes(), strict=False):
        if isinstance(layer, Recurrent):
            if keras_rnn:
                apply, layer_params = keras_recurrent(layer, in_shape, params, dtype)
            else:
                apply, layer_params = recurrent(layer, params, dtype)
        else:
            apply, layer_params = feedforward(layer, in_shape, params, dtype)
        applies.append(apply)
        natives.extend(layer_params)
    nchw_out = is_image(spec.output_shape)

    def model(x: tf.Tensor) -> tf.Tensor:
        for apply in applies:
            x = apply(x)
        return tf.transpose(x, (0, 3, 1, 2)) if nchw_out else x

    return Model(model, loss_fn(spec.loss), tuple(natives))
