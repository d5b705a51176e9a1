"""Losses of the NumPy reference: value and gradient w.r.t. the model output.

`mse` is the mean over all elements; `softmax_cross_entropy` takes logits
(N, K) and integer labels (N,) and averages over the batch. The loss stays in
the dtype of the prediction (a float32 run is float32 throughout).
This module must not import any framework, nor `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def mse(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    diff = pred - y.astype(pred.dtype, copy=False)
    loss = np.mean(diff * diff)
    return loss, diff * (2.0 / diff.size)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Shift by the row maximum first so exp never overflows."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -np.mean(logp[rows, labels])
    dlogits = np.exp(logp)
    dlogits[rows, labels] -= 1.0
    dlogits *= 1.0 / n
    return loss, dlogits


# name -> f(pred, y) -> (scalar loss, d loss / d pred)
LOSSES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "mse": mse,
    "softmax_cross_entropy": softmax_cross_entropy,
}
