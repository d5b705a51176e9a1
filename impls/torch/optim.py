"""The optimiser rules of tasks/optim.py as in-place foreach updates on torch tensors.

`make_update` returns `update(params, grads, t, slots)`, which applies SGD with
momentum or Adam exactly as tasks/optim.py writes them, in place, under
`torch.no_grad`. The step counter lives on the device as a tensor, so Adam's
bias corrections need no host round-trip and a compiled update sees the same
graph every step. torch.optim is not used: its Adam puts eps and the bias
corrections in a different (algebraically equal, numerically different)
order. This module must not import `bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from impls.errors import BackendError
from tasks.optim import OptimizerSpec

Tensors = list[torch.Tensor]

# torch's private multi-tensor kernels (what torch.optim's foreach path calls): checked
# once here, so a torch without them fails to load with one line, not mid-step
FOREACH = ("_foreach_mul_", "_foreach_add_", "_foreach_addcmul_", "_foreach_div",
           "_foreach_div_", "_foreach_sqrt_")
_missing = [name for name in FOREACH if not hasattr(torch, name)]
if _missing:
    raise BackendError(f"torch {torch.__version__} lacks torch.{', torch.'.join(_missing)}, "
                       "which the optimiser updates use (torch 2.x has them)")


@dataclass
class OptimizerState:
    """Per-parameter slots (zero at start) and the step count t (a 0-d int64 device tensor)."""

    t: torch.Tensor
    slots: list[Tensors]  # SGD: [velocity]; Adam: [m, v]


def init_state(spec: OptimizerSpec, params: Tensors) -> OptimizerState:
    n_slots = 1 if spec.name == "sgd" else 2
    slots = [[torch.zeros_like(p, requires_grad=False) for p in params] for _ in range(n_slots)]
    # int64, not the parameters' dtype: torch.compile on CPU silently drops the
    # in-place update of a 0-d float64 input tensor (torch 2.13), leaving t at 0
    t = torch.zeros((), dtype=torch.int64, device=params[0].device)
    return OptimizerState(t=t, slots=slots)


def _sgd(spec: OptimizerSpec, params: Tensors, grads: Tensors, t: torch.Tensor,
         slots: list[Tensors]) -> None:
    (velocity,) = slots
    torch._foreach_mul_(velocity, spec.momentum)  # v <- momentum * v + g
    torch._foreach_add_(velocity, grads)
    torch._foreach_add_(params, velocity, alpha=-spec.lr)  # p <- p - lr * v


def _adam(spec: OptimizerSpec, params: Tensors, grads: Tensors, t: torch.Tensor,
          slots: list[Tensors]) -> None:
    m, v = slots
    t.add_(1)
    b1, b2 = spec.beta1, spec.beta2
    torch._foreach_mul_(m, b1)
    torch._foreach_add_(m, grads, alpha=1 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
    # bias corrections as device tensors (no .item()), computed in float64 and
    # rounded to the parameters' dtype, as in every backend (tasks.optim)
    step = t.to(torch.float64)
    bc1 = (1 - torch.pow(b1, step)).to(params[0].dtype)
    bc2 = (1 - torch.pow(b2, step)).to(params[0].dtype)
    denom = torch._foreach_div(v, bc2)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, spec.eps)  # eps outside the square root
    m_hat = torch._foreach_div(m, bc1)
    torch._foreach_div_(m_hat, denom)
    torch._foreach_add_(params, m_hat, alpha=-spec.lr)


_RULES = {"sgd": _sgd, "adam": _adam}


def make_update(spec: OptimizerSpec) -> Callable[..., None]:
    """`update(params, grads, t, slots)`: plain tensors and lists only, so that
    `torch.compile` can take the same function; hyper-parameters are constants."""
    rule = _RULES[spec.name]

    def update(params: Tensors, grads: Tensors, t: torch.Tensor, slots: list[Tensors]) -> None:
        with torch.no_grad():
            rule(spec, params, grads, t, slots)

    return update
