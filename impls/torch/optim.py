"""The optimiser rules of tasks/optim.py as in-place foreach updates on torch tensors.

The optimiser API of every backend (`impls.OPTIMIZER_API`): `init_state(spec,
params) -> state` and `make_update(spec) -> update(params, grads, state) ->
(params, state)`. Here `update` applies SGD with momentum or Adam exactly as
tasks/optim.py writes them, in place, under `torch.no_grad`, and returns the
same objects. The step counter lives on the device as a tensor, so Adam's
bias corrections need no host round-trip and a compiled update sees the same
graph every step. torch.optim is not used: its Adam puts eps and the bias
corrections in a different (algebraically equal, numerically different)
order. This module must not import `bench`.

The multi-tensor kernels are torch's private `torch._foreach_*` (what
torch.optim's foreach path calls). `foreach_ops` checks for them when an
update is made; a torch without one of them gets the same arithmetic as a
loop of public in-place tensor ops (`LoopOps`): the same numbers, slower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from tasks.optim import OptimizerSpec

Tensors = list[torch.Tensor]

#: torch's private multi-tensor kernels the rules use, by the name they have in `LoopOps`
FOREACH = ("mul_", "add_", "addcmul_", "div", "div_", "sqrt_")


@dataclass
class OptimizerState:
    """Per-parameter slots (zero at start) and the step count t (a 0-d int64 device tensor)."""

    t: torch.Tensor
    slots: list[Tensors]  # SGD: [velocity]; Adam: [m, v]


Update = Callable[[Tensors, Tensors, OptimizerState], tuple[Tensors, OptimizerState]]


def init_state(spec: OptimizerSpec, params: Tensors) -> OptimizerState:
    n_slots = 1 if spec.name == "sgd" else 2
    slots = [[torch.zeros_like(p, requires_grad=False) for p in params] for _ in range(n_slots)]
    # int64, not the parameters' dtype: torch.compile on CPU silently drops the
    # in-place update of a 0-d float64 input tensor (torch 2.13), leaving t at 0
    t = torch.zeros((), dtype=torch.int64, device=params[0].device)
    return OptimizerState(t=t, slots=slots)


class LoopOps:
    """The public fallback of `torch._foreach_<op>`: one in-place tensor op per tensor,
    with the same arguments; eager updates are bit-identical to the fused kernels'
    (tests/test_torch_backend.py). Under `torch.compile` inductor fuses the two
    differently: 3 Adam steps differed by 1.5e-16 relative in float64."""

    @staticmethod
    def mul_(xs: Tensors, scalar: float) -> None:
        for x in xs:
            x.mul_(scalar)

    @staticmethod
    def add_(xs: Tensors, other: Any, alpha: float = 1) -> None:
        if isinstance(other, list | tuple):
            for x, o in zip(xs, other, strict=True):
                x.add_(o, alpha=alpha)
        else:
            for x in xs:
                x.add_(other, alpha=alpha)

    @staticmethod
    def addcmul_(xs: Tensors, a: Tensors, b: Tensors, value: float = 1) -> None:
        for x, u, w in zip(xs, a, b, strict=True):
            x.addcmul_(u, w, value=value)

    @staticmethod
    def div(xs: Tensors, other: Any) -> Tensors:
        return [x.div(other) for x in xs]

    @staticmethod
    def div_(xs: Tensors, others: Tensors) -> None:
        for x, o in zip(xs, others, strict=True):
            x.div_(o)

    @staticmethod
    def sqrt_(xs: Tensors) -> None:
        for x in xs:
            x.sqrt_()


def foreach_ops() -> Any:
    """torch's fused `_foreach_*` kernels where this torch has every one (torch 2.x),
    else `LoopOps`; both offer `mul_, add_, addcmul_, div, div_, sqrt_`."""
    if all(hasattr(torch, f"_foreach_{name}") for name in FOREACH):
        return SimpleNamespace(**{name: getattr(torch, f"_foreach_{name}") for name in FOREACH})
    return LoopOps


def _sgd(ops: Any, spec: OptimizerSpec, params: Tensors, grads: Tensors, t: torch.Tensor,
         slots: list[Tensors]) -> None:
    (velocity,) = slots
    ops.mul_(velocity, spec.momentum)  # v <- momentum * v + g
    ops.add_(velocity, grads)
    ops.add_(params, velocity, alpha=-spec.lr)  # p <- p - lr * v


def _adam(ops: Any, spec: OptimizerSpec, params: Tensors, grads: Tensors, t: torch.Tensor,
          slots: list[Tensors]) -> None:
    m, v = slots
    t.add_(1)
    b1, b2 = spec.beta1, spec.beta2
    ops.mul_(m, b1)
    ops.add_(m, grads, alpha=1 - b1)
    ops.mul_(v, b2)
    ops.addcmul_(v, grads, grads, value=1 - b2)
    # bias corrections as device tensors (no .item()), computed in float64 and
    # rounded to the parameters' dtype, as in every backend (tasks.optim)
    step = t.to(torch.float64)
    bc1 = (1 - torch.pow(b1, step)).to(params[0].dtype)
    bc2 = (1 - torch.pow(b2, step)).to(params[0].dtype)
    denom = ops.div(v, bc2)
    ops.sqrt_(denom)
    ops.add_(denom, spec.eps)  # eps outside the square root
    m_hat = ops.div(m, bc1)
    ops.div_(m_hat, denom)
    ops.add_(params, m_hat, alpha=-spec.lr)


_RULES = {"sgd": _sgd, "adam": _adam}


def make_update(spec: OptimizerSpec, wrap: Callable[[Callable], Callable] | None = None
                ) -> Update:
    """`update(params, grads, state) -> (params, state)`, in place.

    The arithmetic is a kernel over plain tensors and lists (`kernel(params, grads, t,
    slots)`, hyper-parameters as constants) so that `wrap` (the "compile" variant's
    `torch.compile`) can take it; `update` only unpacks the state around it."""
    rule, ops = _RULES[spec.name], foreach_ops()

    def kernel(params: Tensors, grads: Tensors, t: torch.Tensor, slots: list[Tensors]) -> None:
        with torch.no_grad():
            rule(ops, spec, params, grads, t, slots)

    if wrap is not None:
        kernel = wrap(kernel)

    def update(params: Tensors, grads: Tensors, state: OptimizerState
               ) -> tuple[Tensors, OptimizerState]:
        kernel(params, grads, state.t, state.slots)
        return params, state

    return update
