"""The torch Program: one model's parameters, optimiser state and compiled functions.

Holds the parameters as leaf tensors in torch layout on one device, and runs
forward, loss-and-gradients (`torch.autograd.grad`) and an in-place foreach
optimiser step without leaving the device. The "compile" variant wraps the
very same loss, forward and update functions in `torch.compile` once, here.
Layout conversion happens only in `__init__`, `params` and
`grads_to_canonical`.

Precision modes (`impls.base.PRECISIONS`) are applied by the program around
its own calls, never left set: "bf16"/"fp16" run forward and loss under
`torch.autocast` inside the very functions eager, compile and autograd share
(parameters and optimiser state stay float32, the loss is taken in float32);
"tf32" switches torch's fp32 matmul/convolution precision to TF32 for the
duration of each call and restores the previous setting (`tf32_enabled`);
"fp16" scales the loss and unscales the gradients with the ops
`torch.amp.GradScaler` is made of, skipping a step whose gradients overflow.
Speed settings (`impls.settings`, passed as build `options`): `compile_mode` and
`fullgraph` are `torch.compile`'s arguments (default: mode "default", fullgraph
True, so that a graph break cannot silently run part of the step eagerly);
`channels_last` holds 4-D parameters and batches in `torch.channels_last`;
`inference_mode` runs forward under `torch.inference_mode()` instead of
`torch.no_grad()`; `cudnn_benchmark` sets `torch.backends.cudnn.benchmark` around
each call, restored after it, like TF32. This module must not import `bench`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from impls.base import (
    COMPUTE_DTYPES,
    LOSS_SCALE,
    STRICT,
    Program,
    check_recurrent,
    label_dtype,
    next_loss_scale,
    probe_shapes,
)
from impls.torch.losses import LOSSES
from impls.torch.model import TorchModel
from impls.torch.optim import init_state, make_update
from tasks.optim import OptimizerSpec

# Dynamo caches compiled graphs per code object, and every program shares
# TorchModel.loss / forward: each built program (other spec, dtype or batch)
# adds one cache entry. Past the default limit of 8 dynamo would quietly run
# eager, so a benchmark process building many programs gets more room.
_RECOMPILE_LIMIT = 64

LABELS = label_dtype("torch")

#: torch's private loss-scaling kernels (what torch.amp.GradScaler calls), by the name
#: they have in `LoopScaling`; `loss_scaling` falls back to that where one is missing
AMP_KERNELS = {"unscale_": "_amp_foreach_non_finite_check_and_unscale_",
               "update_scale_": "_amp_update_scale_"}
#: autocast's compute dtype per reduced mode
AUTOCAST = {mode: getattr(torch, name) for mode, name in COMPUTE_DTYPES.items()}


class LoopScaling:
    """The public fallback of torch's two loss-scaling kernels, with their arguments and
    their arithmetic (the same products and comparisons, in public tensor ops)."""

    @staticmethod
    def unscale_(grads: list[torch.Tensor], found_inf: torch.Tensor,
                 inv_scale: torch.Tensor) -> None:
        """Multiply every gradient by `inv_scale` in place; `found_inf` becomes 1 if any
        gradient held an inf or a NaN."""
        bad = torch.stack([~torch.isfinite(g).all() for g in grads]).any()
        for g in grads:
            g.mul_(inv_scale)
        found_inf.copy_(torch.maximum(found_inf, bad.to(found_inf.dtype)))

    @staticmethod
    def update_scale_(scale: torch.Tensor, tracker: torch.Tensor, found_inf: torch.Tensor,
                      growth: float, backoff: float, interval: int) -> None:
        """`scale` and `tracker` (finite steps in a row) after a step, in place: the rule
        of `impls.base.next_loss_scale`."""
        new_scale, count = next_loss_scale(torch.where, torch.isfinite, scale, tracker,
                                           found_inf == 0, (growth, backoff, interval))
        scale.copy_(new_scale)
        tracker.copy_(count)


def loss_scaling() -> Any:
    """torch's private loss-scaling kernels where this torch has both, else
    `LoopScaling`; both offer `unscale_` and `update_scale_`."""
    if all(hasattr(torch, name) for name in AMP_KERNELS.values()):
        return SimpleNamespace(**{k: getattr(torch, name) for k, name in AMP_KERNELS.items()})
    return LoopScaling


def _fp32_flags() -> list[tuple[Any, str]]:
    """The objects holding torch's fp32 matmul/convolution/RNN precision settings."""
    cudnn = torch.backends.cudnn
    return [(torch.backends.cuda.matmul, "fp32_precision"), (cudnn.conv, "fp32_precision"),
            (cudnn.rnn, "fp32_precision")]


@contextlib.contextmanager
def tf32_enabled() -> Iterator[None]:
    """TF32 matmuls, convolutions and RNNs for the block, then the settings as they were."""
    flags = _fp32_flags()
    saved = [getattr(obj, name) for obj, name in flags]
    try:
        for obj, name in flags:
            setattr(obj, name, "tf32")
        yield
    finally:
        for (obj, name), value in zip(flags, saved, strict=True):
            setattr(obj, name, value)


def _autocast(fn, device: torch.device, dtype: torch.dtype, loss_fn=None):
    """`fn` (forward, or with `loss_fn` the loss) run under autocast; the network
    output leaves autocast as float32, so the loss is computed in float32."""
    kind = device.type

    if loss_fn is None:
        def forward(params, x):
            with torch.autocast(kind, dtype=dtype):
                out = fn(params, x)
            return out.float()

        return forward

    def loss(params, x, y):
        with torch.autocast(kind, dtype=dtype):
            out = fn(params, x)
        return loss_fn(out.float(), y)

    return loss


def _compile(fn, mode: str = "default", fullgraph: bool = True):
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, _RECOMPILE_LIMIT)
    # fullgraph: a graph break would silently fall back to eager for part of the step
    return torch.compile(fn, mode=mode, dynamic=False, fullgraph=fullgraph)


@contextlib.contextmanager
def cudnn_benchmark() -> Iterator[None]:
    """cuDNN's autotuner for the block, then the setting as it was."""
    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor in channels_last memory format (a leaf stays a leaf)."""
    if t.dim() != 4:
        return t
    out = t.detach().contiguous(memory_format=torch.channels_last)
    return out.requires_grad_(t.requires_grad)


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
        precision: str = STRICT,
        options: dict[str, Any] | None = None,
    ) -> None:
        options = dict(options or {})
        self.model = model
        self.precision_mode = precision
        self.dtype = dtype
        self.device = device
        self._params = model.to_native(params, dtype, device)
        self._channels_last = bool(options.get("channels_last"))
        if self._channels_last:
            self._params = [_channels_last(p) for p in self._params]
        self._no_grad = torch.inference_mode if options.get("inference_mode") else torch.no_grad
        self._state = init_state(optimizer, self._params)
        forward, loss = model.forward, model.loss
        if precision in AUTOCAST:
            half = AUTOCAST[precision]
            forward, loss = (_autocast(model.forward, device, half),
                             _autocast(model.forward, device, half, LOSSES[model.spec.loss]))
        # fp16: [scale, growth tracker] as device tensors, as GradScaler keeps them
        self._scaler = (torch.full((), LOSS_SCALE[0], device=device),
                        torch.zeros((), dtype=torch.int32, device=device)) \
            if precision == "fp16" else None
        self._scaling = loss_scaling() if precision == "fp16" else None
        # tf32 is a process setting in torch: switched on around each call only
        self._tf32 = precision == "tf32"
        self._cudnn_benchmark = bool(options.get("cudnn_benchmark"))
        self._compile_args = (str(options.get("compile_mode", "default")),
                              bool(options.get("fullgraph", True)))

        def compile_(fn):
            return _compile(fn, *self._compile_args)

        update = make_update(optimizer, compile_ if compiled else None)
        if compiled:
            forward, loss = compile_(forward), compile_(loss)
        self._forward, self._loss, self._update = forward, loss, update
        self._compiled = compiled
        self._piecewise = None  # built on first use: only agreement checks need it

    def put(self, array: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(array)
        if array.dtype.kind in "iub":
            return torch.from_numpy(array.astype(LABELS)).to(self.device)
        value = torch.from_numpy(array).to(device=self.device, dtype=self.dtype)
        return _channels_last(value) if self._channels_last else value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._cudnn_benchmark:
            with cudnn_benchmark():
                return self._forward_flags(x)
        return self._forward_flags(x)

    def _forward_flags(self, x: torch.Tensor) -> torch.Tensor:
        if self._tf32:
            with self._no_grad(), tf32_enabled():
                return self._forward(self._params, x)
        with self._no_grad():
            return self._forward(self._params, x)

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor):
        if self._cudnn_benchmark:
            with cudnn_benchmark():
                return self._loss_and_grads_flags(x, y)
        return self._loss_and_grads_flags(x, y)

    def _loss_and_grads_flags(self, x: torch.Tensor, y: torch.Tensor):
        if self._scaler is not None:
            loss, grads, _ = self._scaled_grads(x, y)
            return loss, grads
        if self._tf32:
            with tf32_enabled():
                return self._loss_and_grads(x, y)
        return self._loss_and_grads(x, y)

    def _loss_and_grads(self, x: torch.Tensor, y: torch.Tensor):
        loss = self._loss(self._params, x, y)
        grads = torch.autograd.grad(loss, self._params)
        return loss.detach(), grads

    def _scaled_grads(self, x: torch.Tensor, y: torch.Tensor):
        """fp16: gradients of the scaled loss, unscaled in place; and whether any overflowed."""
        scale, _ = self._scaler
        loss = self._loss(self._params, x, y)
        grads = list(torch.autograd.grad(loss * scale, self._params))
        found_inf = torch.zeros((), device=scale.device)
        self._scaling.unscale_(grads, found_inf, scale.reciprocal())
        return loss.detach(), grads, found_inf

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._cudnn_benchmark:
            with cudnn_benchmark():
                return self._step(x, y)
        return self._step(x, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._scaler is not None:
            loss, grads, found_inf = self._scaled_grads(x, y)
            # GradScaler.step reads found_inf on the host too: an overflowing step is skipped
            if not found_inf.item():
                self._params, self._state = self._update(self._params, grads, self._state)
            scale, tracker = self._scaler
            _, growth, backoff, interval = LOSS_SCALE
            self._scaling.update_scale_(scale, tracker, found_inf, growth, backoff, interval)
            return loss
        loss, grads = self.loss_and_grads(x, y)
        if self._tf32:  # the update has no matmul, but a compiled one may retrace on flags
            with tf32_enabled():
                self._params, self._state = self._update(self._params, list(grads), self._state)
            return loss
        self._params, self._state = self._update(self._params, list(grads), self._state)
        return loss

    @property
    def loss_scale(self) -> float | None:
        """fp16's current dynamic loss scale (None in other modes)."""
        return None if self._scaler is None else float(self._scaler[0])

    def piecewise_inputs(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        # "compile" reads its masks from a compiled copy of the pass (one more compile,
        # 8 s for the large CNN on 2 cores, in the untimed check only): inductor's
        # kernels round differently from eager ones, so eager masks put kink flips
        # where the compiled step has none. Measured on the large CNN in float32:
        # eager masks differ from the compiled ones in 6 units, and the gradients
        # against the reference on eager masks stay 3.5x over tolerance; on the
        # compiled masks they agree to 8.4e-6.
        if self._piecewise is None:
            fn = self.model.piecewise_inputs
            self._piecewise = _compile(fn, *self._compile_args) if self._compiled else fn
        with torch.no_grad():
            found = self._piecewise(self._params, x)
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

    def hidden_state_grads(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        check_recurrent(self.model.spec)
        # Eager in every variant: the probed loss is a separate function from the timed
        # one, and compiling it would cost a compile per call shape for an untimed check.
        probes = {
            name: torch.zeros(shape, dtype=self.dtype, device=self.device, requires_grad=True)
            for name, shape in probe_shapes(self.model.spec, x.shape[0]).items()
        }
        loss = self.model.loss_probed(self._params, x, y, probes)
        grads = torch.autograd.grad(loss, list(probes.values()))
        return {k: g.detach().cpu().numpy() for k, g in zip(probes, grads, strict=True)}

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return None

