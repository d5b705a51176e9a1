"""Feed-forward layers and losses of the torch backend, as pure functions of tensors.

Each function takes its input and its parameters in torch's native layout
(Dense weight (out, in), Conv2D weight OIHW) and returns the output; autograd
supplies the backward. The same functions run eagerly and under
`torch.compile`, so nothing here may branch on tensor values or leave the
device. This module must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tasks.spec import Conv2D, Dense, MaxPool2D

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
}


def dense(layer: Dense, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return ACTIVATIONS[layer.activation](F.linear(x, weight, bias))


def conv2d(
    layer: Conv2D, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    y = F.conv2d(x, weight, bias, stride=layer.stride, padding=layer.pad)
    return ACTIVATIONS[layer.activation](y)


def maxpool2d(layer: MaxPool2D, x: torch.Tensor) -> torch.Tensor:
    # ceil_mode=False drops the remainder rows/columns, as the spec requires
    return F.max_pool2d(x, kernel_size=layer.size, stride=layer.size)


def flatten(x: torch.Tensor) -> torch.Tensor:
    # NCHW is torch's own layout, so a row-major reshape is the canonical C, H, W order
    return x.reshape(x.shape[0], -1)


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, y, reduction="mean")


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="mean")


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": mse,
    "softmax_cross_entropy": softmax_cross_entropy,
}
