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


# ----------------------------------------------------- torch.nn modules ("nn" variant)
def activation_module(name: str) -> torch.nn.Module:
    from torch import nn

    return {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "relu": nn.ReLU}[name]()


class ModuleLayer:
    """One feed-forward layer as torch.nn modules whose parameters the program owns.

    Dense is `nn.Linear` (+ activation module), Conv2D `nn.Conv2d` (+ activation),
    MaxPool2D `nn.MaxPool2d`, Flatten `nn.Flatten`. `weights` (torch layout, the
    layer's slots in the program's list) are copied into the module once; the
    module's own Parameters then take those slots, as `recurrent.FusedRecurrent`
    does, so autograd and the in-place optimiser act on what the module reads.
    """

    def __init__(self, layer, in_shape: tuple[int, ...], weights: list[torch.Tensor],
                 dtype: torch.dtype, device: torch.device) -> None:
        from torch import nn

        from tasks.spec import Conv2D, Dense, Flatten, MaxPool2D

        kw = dict(dtype=dtype, device=device)
        if isinstance(layer, Dense):
            core: nn.Module = nn.Linear(in_shape[0], layer.units, **kw)
            mods = [core, activation_module(layer.activation)]
        elif isinstance(layer, Conv2D):
            core = nn.Conv2d(in_shape[0], layer.filters, layer.kernel, stride=layer.stride,
                             padding=layer.pad, **kw)
            mods = [core, activation_module(layer.activation)]
        elif isinstance(layer, MaxPool2D):
            core, mods = None, [nn.MaxPool2d(layer.size)]  # floor mode drops the remainder
        elif isinstance(layer, Flatten):
            core, mods = None, [nn.Flatten()]  # NCHW: C, H, W order
        else:
            raise TypeError(f"no torch.nn module for {layer!r}")
        self._params: list[torch.Tensor] = []
        if core is not None:
            with torch.no_grad():
                core.weight.copy_(weights[0])
                core.bias.copy_(weights[1])
            self._params = [core.weight, core.bias]
        self.module = mods[0] if len(mods) == 1 else nn.Sequential(*mods)

    def parameters(self) -> list[torch.Tensor]:
        return list(self._params)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
