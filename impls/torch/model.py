"""A ModelSpec as a torch function of a flat parameter list, plus layout conversion.

`TorchModel` turns the spec into a list of layer ops and gives
`forward(params, x)`, a pure function of the program's parameter tensors
(canonical order, torch layout) that eager mode, `torch.compile` and autograd
all share. It also owns the one table of layout conversions between canonical
arrays and torch tensors. It must not import `bench`, and it never moves data
to the host inside `forward`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from impls.base import BackendError, piecewise_layers
from impls.torch import layers as L
from impls.torch.losses import LOSSES
from impls.torch.recurrent import FusedRecurrent, recurrent, recurrent_probed
from tasks.spec import Conv2D, Dense, Flatten, MaxPool2D, ModelSpec, Recurrent, param_shapes

# Canonical parameters whose torch layout is the transpose: Dense (in, out) ->
# (out, in) for F.linear, recurrent (F|H, G*H) -> (G*H, F|H) as nn.LSTM stores them.
# Conv2D is OIHW in both, biases are vectors in both.
_TRANSPOSED = {(Dense, "weight"), (Recurrent, "w_ih"), (Recurrent, "w_hh")}

Op = Callable[..., torch.Tensor]


def _needs_transpose(spec: ModelSpec) -> dict[str, bool]:
    result: dict[str, bool] = {}
    for layer, shape in zip(spec.layers, spec.shapes(), strict=False):
        for name in param_shapes(layer, shape):
            result[name] = (type(layer), name.rsplit(".", 1)[1]) in _TRANSPOSED
    return result


class TorchModel:
    """The spec's layers as ops over slices of one flat parameter list.

    With `native_rnn`, recurrent layers become fused torch modules when
    `to_native` creates the parameters; each module's own Parameters take the
    layer's slots in the program's list, so the op ignores its slice: the
    slice holds the very same tensor objects. With `nn_modules` every layer
    becomes torch.nn modules that way (`layers.ModuleLayer`, and the fused
    recurrent modules): the "nn" variant. Call `to_native` before `forward`.
    """

    def __init__(self, spec: ModelSpec, native_rnn: bool = False,
                 nn_modules: bool = False) -> None:
        self.spec = spec
        self.native_rnn = native_rnn or nn_modules
        self.nn_modules = nn_modules
        self.transpose = _needs_transpose(spec)
        self.names = list(self.transpose)
        self._ops: list[tuple[Op, int]] = []
        # (op index, first parameter index, layer, input shape) of each module layer
        self._natives: list[tuple[int, int, Recurrent, tuple[int, ...]]] = []
        first = 0
        for layer, shape in zip(spec.layers, spec.shapes(), strict=False):
            op, count = self._op(layer)
            if self.native_rnn and isinstance(layer, Recurrent) or nn_modules:
                self._natives.append((len(self._ops), first, layer, tuple(shape)))
            self._ops.append((op, count))
            first += count

    @staticmethod
    def _op(layer) -> tuple[Op, int]:
        if isinstance(layer, Dense):
            return (lambda x, w, b, _l=layer: L.dense(x, w, b, _l.activation)), 2
        if isinstance(layer, Conv2D):
            return (lambda x, w, b, _l=layer: L.conv2d(x, w, b, _l.stride, _l.pad,
                                                       _l.activation)), 2
        if isinstance(layer, MaxPool2D):
            return (lambda x, _l=layer: L.maxpool2d(x, _l.size)), 0
        if isinstance(layer, Flatten):
            return L.flatten, 0
        if isinstance(layer, Recurrent):
            return (lambda x, *p, _l=layer: recurrent(x, *p, _l.cell, _l.return_sequences,
                                                      _l.activation)), 4
        raise TypeError(f"unsupported layer {layer!r}")

    def to_native(
        self, params: dict[str, np.ndarray], dtype: torch.dtype, device: torch.device
    ) -> list[torch.Tensor]:
        """Canonical NumPy arrays -> leaf tensors in torch layout (done once, in build)."""
        tensors = []
        for name in self.names:
            value = np.asarray(params[name])
            value = value.T if self.transpose[name] else value
            t = torch.tensor(np.ascontiguousarray(value), dtype=dtype, device=device)
            tensors.append(t.requires_grad_(True))
        for op_index, first, layer, in_shape in self._natives:
            count = self._ops[op_index][1]
            weights = tensors[first : first + count]
            if isinstance(layer, Recurrent):
                native = FusedRecurrent(layer, in_shape, weights, dtype, device)
            else:
                native = L.ModuleLayer(layer, in_shape, weights, dtype, device)
            tensors[first : first + count] = [p.requires_grad_(True) for p in native.parameters()]
            self._ops[op_index] = ((lambda x, *_p, _n=native: _n(x)), count)
        return tensors

    def to_canonical(self, tensors: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        """Torch-layout tensors (parameters or their gradients) -> canonical NumPy arrays."""
        result = {}
        for name, t in zip(self.names, tensors, strict=True):
            value = t.detach().cpu().numpy()
            result[name] = np.ascontiguousarray(value.T if self.transpose[name] else value)
        return result

    def forward(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        index = 0
        for op, count in self._ops:
            x = op(x, *params[index : index + count])
            index += count
        return x

    def piecewise_inputs(
        self, params: Sequence[torch.Tensor], x: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """`forward`, keeping each ReLU layer's pre-activation and each max-pool's input
        by layer name (NCHW is canonical already). Run eagerly, outside autograd."""
        kinds = piecewise_layers(self.spec)
        out: dict[str, torch.Tensor] = {}
        index = 0
        for layer, (op, count) in zip(self.spec.layers, self._ops, strict=True):
            p = params[index : index + count]
            index += count
            kind = kinds.get(layer.name)
            if kind == "relu" and isinstance(layer, Dense):
                out[layer.name] = z = L.dense(x, *p, "identity")
                x = L.activate("relu", z)
            elif kind == "relu" and isinstance(layer, Conv2D):
                out[layer.name] = z = L.conv2d(x, *p, layer.stride, layer.pad, "identity")
                x = L.activate("relu", z)
            else:
                if kind == "maxpool":
                    out[layer.name] = x
                x = op(x, *p)
        return out

    def loss(self, params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        return LOSSES[self.spec.loss](self.forward(params, x), y)

    def loss_probed(self, params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    probes: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss with `probes[layer]` (N, T, H) added to each recurrent layer's
        hidden states (primitive-op cells only: a fused module has no place for one)."""
        if self.native_rnn:
            raise BackendError("torch native: hidden-state gradients are not supported "
                               "(a fused recurrent module takes no probe inside its loop)")
        index = 0
        for layer, (op, count) in zip(self.spec.layers, self._ops, strict=True):
            args = params[index : index + count]
            if isinstance(layer, Recurrent):
                x = recurrent_probed(x, *args, layer.cell, layer.return_sequences,
                                     probes[layer.name], layer.activation)
            else:
                x = op(x, *args)
            index += count
        return LOSSES[self.spec.loss](x, y)
