"""Losses of the TensorFlow backend on (model output, target), reduced as the reference does.

`mse` is the mean over all elements; `softmax_cross_entropy` takes logits
(N, K) and integer labels (N,) and averages over the batch. Traced inside
`tf.function`; `tf.GradientTape` supplies the gradient. This module must not
import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def mse(pred: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(pred - y))


def softmax_cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


# name -> f(pred, y) -> scalar loss
LOSSES: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "mse": mse,
    "softmax_cross_entropy": softmax_cross_entropy,
}
