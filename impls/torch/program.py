"""The torch Program: one model's parameters, optimiser state and compiled functions.

Holds the parameters as leaf tensors in torch layout on one device, and runs
forward, loss-and-gradients (`torch.autograd.grad`) and an in-place foreach
optimiser step without leaving the device. The "compile" variant wraps the
very same loss, forward and update functions in `torch.compile` once, here.
Layout conversion happens only in `__init__`, `params` and
`grads_to_canonical`. This module must not import `bench`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from impls.base import Program, label_dtype
from impls.torch.model import TorchModel
from impls.torch.optim import init_state, make_update
from tasks.optim import OptimizerSpec

# Dynamo caches compiled graphs per code object, and every program shares
# TorchModel.loss / forward: each built program (other spec, dtype or batch)
# adds one cache entry. Past the default limit of 8 dynamo would quietly run
# eager, so a benchmark process building many programs gets more room.
_RECOMPILE_LIMIT = 64

LABELS = label_dtype("torch")


def _compile(fn):
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, _RECOMPILE_LIMIT)
    # fullgraph: a graph break would silently fall back to eager for part of the step
    return torch.compile(fn, mode="default", dynamic=False, fullgraph=True)


class TorchProgram(Program):
    def __init__(
        self,
        model: TorchModel,
        params: dict[str, np.ndarray],
        *,
        compiled: bool,
        dtype: torch.dtype,
        device: torch.device,
        optimizer: OptimizerSpec,
    ) -> None:
        self.model = model
        self.dtype = dtype
        self.device = device
        self._params = model.to_native(params, dtype, device)
        state = init_state(optimizer, self._params)
        self._t, self._slots = state.t, state.slots
        forward, loss, update = model.forward, model.loss, make_update(optimizer)
        if compiled:
            forward, loss, update = _compile(forward), _compile(loss), _compile(update)
        self._forward, self._loss, self._update = forward, loss, update

    def put(self, array: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(array)
        if array.dtype.kind in "iub":
            return torch.from_numpy(array.astype(LABELS)).to(self.device)
        return torch.from_numpy(array).to(device=self.device, dtype=self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._forward(self._params, x)

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor):
        loss = self._loss(self._params, x, y)
        grads = torch.autograd.grad(loss, self._params)
        return loss.detach(), grads

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss, grads = self.loss_and_grads(x, y)
        self._update(self._params, list(grads), self._t, self._slots)
        return loss

    def piecewise_inputs(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        # Eager even for "compile": compiling one more function costs 10-20 s, and
        # the masks of compiled kernels can only differ where rounding differs,
        # which the agreement check then reports as a residual disagreement.
        with torch.no_grad():
            found = self.model.piecewise_inputs(self._params, x)
        return {k: v.detach().cpu().numpy() for k, v in found.items()}

    def sync(self, value: Any = None) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def to_numpy(self, value: Any) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    def grads_to_canonical(self, grads) -> dict[str, np.ndarray]:
        return self.model.to_canonical(grads)

    def params(self) -> dict[str, np.ndarray]:
        return self.model.to_canonical(self._params)

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return None
