"""Feed-forward layers and losses of the TensorFlow backend, from primitive ops.

Each builder turns one spec layer plus its canonical NumPy parameters into a
function of the (native) activation and the `NativeParam`s it reads. Images
run NHWC, the only conv2d layout TensorFlow's CPU kernels support: OIHW
weights become HWIO here, once, and Flatten transposes back to NCHW so it
flattens in C, H, W order like every other backend. Nothing in this module
runs per step except the returned functions; it must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tasks.spec import Conv2D, Dense, Flatten, Layer, MaxPool2D

Apply = Callable[[tf.Tensor], tf.Tensor]
ToCanonical = Callable[[np.ndarray], dict[str, np.ndarray]]

ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "identity": tf.identity,
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
}


def _same(name: str) -> ToCanonical:
    return lambda a: {name: a}


@dataclass(frozen=True)
class NativeParam:
    """One native variable and its way back to canonical names and layout.

    `grad_to_canonical` maps the variable's gradient; `value_to_canonical` its
    current value (they differ only where one native variable stands for
    several canonical ones, like a Keras LSTM's single bias). The optimiser
    multiplies this variable's update by `update_scale` (see `impls.tensorflow.fused`).
    """

    variable: tf.Variable
    grad_to_canonical: ToCanonical
    value_to_canonical: ToCanonical
    update_scale: float = 1.0


def native(var: tf.Variable, name: str, to_canonical: ToCanonical | None = None) -> NativeParam:
    """A variable that is exactly one canonical parameter (possibly re-laid-out)."""
    conv = to_canonical or _same(name)
    return NativeParam(var, conv, conv)


def variable(array: np.ndarray, dtype: tf.DType) -> tf.Variable:
    return tf.Variable(tf.constant(np.asarray(array), dtype=dtype), trainable=True)


def dense(layer: Dense, params: dict[str, np.ndarray], dtype: tf.DType):
    w = variable(params[f"{layer.name}.weight"], dtype)
    b = variable(params[f"{layer.name}.bias"], dtype)
    act = ACTIVATIONS[layer.activation]

    def apply(x: tf.Tensor) -> tf.Tensor:
        return act(tf.matmul(x, w) + b)

    return apply, [native(w, f"{layer.name}.weight"), native(b, f"{layer.name}.bias")]


def conv2d(layer: Conv2D, params: dict[str, np.ndarray], dtype: tf.DType):
    name = f"{layer.name}.weight"
    w = variable(params[name].transpose(2, 3, 1, 0), dtype)  # OIHW -> HWIO
    b = variable(params[f"{layer.name}.bias"], dtype)
    act = ACTIVATIONS[layer.activation]
    # TF's SAME pads k//2 on both sides for an odd kernel at stride 1, the only
    # case the spec allows.
    padding = "SAME" if layer.padding == "same" else "VALID"
    stride = layer.stride

    def apply(x: tf.Tensor) -> tf.Tensor:
        return act(tf.nn.bias_add(tf.nn.conv2d(x, w, stride, padding), b))

    to_oihw = lambda a: {name: a.transpose(3, 2, 0, 1)}  # noqa: E731
    return apply, [native(w, name, to_oihw), native(b, f"{layer.name}.bias")]


def maxpool2d(layer: MaxPool2D):
    size = layer.size
    # VALID with window = stride drops the remainder rows/columns, as the spec says.
    return lambda x: tf.nn.max_pool2d(x, size, size, "VALID"), []


def flatten(in_rank: int):
    def apply(x: tf.Tensor) -> tf.Tensor:
        if in_rank == 3:  # an NHWC image: flatten in canonical C, H, W order
            x = tf.transpose(x, (0, 3, 1, 2))
        return tf.reshape(x, (tf.shape(x)[0], -1))

    return apply, []


def feedforward(layer: Layer, in_shape: tuple[int, ...], params, dtype: tf.DType):
    """(apply, native params) for any non-recurrent layer."""
    if isinstance(layer, Dense):
        return dense(layer, params, dtype)
    if isinstance(layer, Conv2D):
        return conv2d(layer, params, dtype)
    if isinstance(layer, MaxPool2D):
        return maxpool2d(layer)
    if isinstance(layer, Flatten):
        return flatten(len(in_shape))
    raise TypeError(f"not a feed-forward layer: {layer!r}")


def loss_fn(name: str) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The spec's loss on (model output, target), reduced exactly as the reference does."""
    if name == "mse":
        return lambda out, y: tf.reduce_mean(tf.square(out - y))
    if name == "softmax_cross_entropy":
        return lambda out, y: tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)
        )
    raise ValueError(f"unknown loss {name!r}")
