"""Losses of the torch backend on (model output, target), reduced as the reference does.

`mse` is the mean over all elements; `softmax_cross_entropy` takes logits
(N, K) and integer labels (N,) and averages over the batch. Autograd supplies
the gradient. This module must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, y, reduction="mean")


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="mean")


# name -> f(pred, y) -> scalar loss
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": mse,
    "softmax_cross_entropy": softmax_cross_entropy,
}
