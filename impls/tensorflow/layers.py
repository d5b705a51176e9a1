"""Feed-forward layers and activations of the TensorFlow backend, from primitive ops.

Pure functions of tensors: each takes its input, then its parameters in
TensorFlow's native layout (variables made by `model`), then the spec's
settings. Images run NHWC, the only conv2d layout TensorFlow's CPU kernels
support, so Conv2D weights are HWIO and `flatten` transposes an image back to
NCHW so it flattens in C, H, W order like every other backend; where a Dense
follows, `model` instead permutes that Dense's weight rows once at build and
uses `flatten_native`, a plain reshape. Traced inside
`tf.function`; this module must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "identity": tf.identity,
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
}


def activate(name: str, z: tf.Tensor) -> tf.Tensor:
    return ACTIVATIONS[name](z)


def dense(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, activation: str) -> tf.Tensor:
    return activate(activation, tf.matmul(x, weight) + bias)


def conv2d(
    x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, stride: int, pad: int, activation: str
) -> tf.Tensor:
    """NHWC input, HWIO weight. The spec pads only for 'same' (odd kernel, stride 1),
    where TF's SAME pads k//2 on both sides, exactly `pad`; with `pad` 0 no
    padding is involved, as VALID says."""
    padding = "SAME" if pad else "VALID"
    return activate(activation, tf.nn.bias_add(tf.nn.conv2d(x, weight, stride, padding), bias))


def maxpool2d(x: tf.Tensor, size: int) -> tf.Tensor:
    # VALID with window = stride drops the remainder rows/columns, as the spec says.
    return tf.nn.max_pool2d(x, size, size, "VALID")


def flatten_native(x: tf.Tensor) -> tf.Tensor:
    """Flatten in the native (H, W, C) order: a free reshape. Only for a Flatten
    whose next Dense took its weight rows in that order (`model.hwc_rows`)."""
    return tf.reshape(x, (tf.shape(x)[0], -1))


def flatten(x: tf.Tensor) -> tf.Tensor:
    if len(x.shape) == 4:  # an NHWC image batch: flatten in canonical C, H, W order
        x = tf.transpose(x, (0, 3, 1, 2))
    return tf.reshape(x, (tf.shape(x)[0], -1))
