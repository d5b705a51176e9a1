"""SGD with momentum and Adam on dicts of NumPy arrays, exactly as tasks/optim.py.

The optimiser API of every backend (`impls.OPTIMIZER_API`): `init_state(spec,
params) -> state` and `make_update(spec) -> update(params, grads, state) ->
(params, state)`. Here the update is applied in place to the parameter and
state arrays, so a Program keeps its buffers, and returns the same objects.
Hyper-parameters are Python floats, so float32 state stays float32. This
module must not import any framework, nor `bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tasks.optim import OptimizerSpec

Arrays = dict[str, np.ndarray]
#: {"v": velocity} for SGD; {"m": ..., "v": ..., "t": steps taken} for Adam
State = dict[str, Any]
Update = Callable[[Arrays, Arrays, State], tuple[Arrays, State]]


def init_state(spec: OptimizerSpec, params: Arrays) -> State:
    """Zero slots for every parameter; Adam's step count `t` starts at 0."""
    def zeros() -> Arrays:
        return {k: np.zeros_like(p) for k, p in params.items()}

    if spec.name == "sgd":
        return {"v": zeros()}
    return {"m": zeros(), "v": zeros(), "t": 0}


def _sgd(spec: OptimizerSpec, params: Arrays, grads: Arrays, state: State) -> None:
    """v <- momentum * v + g;  p <- p - lr * v  (PyTorch convention)."""
    for k, p in params.items():
        v = state["v"][k]
        v *= spec.momentum
        v += grads[k]
        p -= spec.lr * v


def _adam(s: OptimizerSpec, params: Arrays, grads: Arrays, state: State) -> None:
    """Bias-corrected Adam with eps outside the square root; `t` counts from 1."""
    state["t"] += 1
    c1 = 1.0 - s.beta1 ** state["t"]
    c2 = 1.0 - s.beta2 ** state["t"]
    for k, p in params.items():
        g, m, v = grads[k], state["m"][k], state["v"][k]
        m *= s.beta1
        m += (1.0 - s.beta1) * g
        v *= s.beta2
        v += (1.0 - s.beta2) * (g * g)
        p -= s.lr * (m / c1) / (np.sqrt(v / c2) + s.eps)


_RULES = {"sgd": _sgd, "adam": _adam}


def make_update(spec: OptimizerSpec) -> Update:
    """`update(params, grads, state) -> (params, state)`, in place."""
    rule = _RULES[spec.name]

    def update(params: Arrays, grads: Arrays, state: State) -> tuple[Arrays, State]:
        rule(spec, params, grads, state)
        return params, state

    return update
