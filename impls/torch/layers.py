"""Feed-forward layers and activations of the torch backend, as pure functions of tensors.

Each function takes its input, then its parameters in torch's native layout
(Dense weight (out, in), Conv2D weight OIHW), then the spec's settings, and
returns the output; autograd supplies the backward. The same functions run
eagerly and under `torch.compile`, so nothing here may branch on tensor
values or leave the device. This module must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
}


def activate(name: str, z: torch.Tensor) -> torch.Tensor:
    return ACTIVATIONS[name](z)


def dense(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str
) -> torch.Tensor:
    return activate(activation, F.linear(x, weight, bias))


def conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int, pad: int,
    activation: str,
) -> torch.Tensor:
    return activate(activation, F.conv2d(x, weight, bias, stride=stride, padding=pad))


def maxpool2d(x: torch.Tensor, size: int) -> torch.Tensor:
    # ceil_mode=False drops the remainder rows/columns, as the spec requires
    return F.max_pool2d(x, kernel_size=size, stride=size)


def flatten(x: torch.Tensor) -> torch.Tensor:
    # NCHW is torch's own layout, so a row-major reshape is the canonical C, H, W order
    return x.reshape(x.shape[0], -1)
