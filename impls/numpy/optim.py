"""SGD with momentum and Adam on dicts of NumPy arrays, exactly as tasks/optim.py.

The update is applied in place to the parameter arrays so a Program keeps its
buffers. Hyper-parameters are Python floats, so float32 state stays float32.
This module must not import any framework, nor `bench`.
"""

from __future__ import annotations

import numpy as np

from tasks.optim import OptimizerSpec

Arrays = dict[str, np.ndarray]


class SGD:
    """v <- momentum * v + g;  p <- p - lr * v  (PyTorch convention)."""

    def __init__(self, spec: OptimizerSpec, params: Arrays) -> None:
        self.lr, self.momentum = spec.lr, spec.momentum
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()}

    def update(self, params: Arrays, grads: Arrays) -> None:
        for k, p in params.items():
            v = self.velocity[k]
            v *= self.momentum
            v += grads[k]
            p -= self.lr * v


class Adam:
    """Bias-corrected Adam with eps outside the square root; `t` counts from 1."""

    def __init__(self, spec: OptimizerSpec, params: Arrays) -> None:
        self.spec = spec
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def update(self, params: Arrays, grads: Arrays) -> None:
        s = self.spec
        self.t += 1
        c1 = 1.0 - s.beta1**self.t
        c2 = 1.0 - s.beta2**self.t
        for k, p in params.items():
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= s.beta1
            m += (1.0 - s.beta1) * g
            v *= s.beta2
            v += (1.0 - s.beta2) * (g * g)
            p -= s.lr * (m / c1) / (np.sqrt(v / c2) + s.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(spec: OptimizerSpec, params: Arrays) -> SGD | Adam:
    return OPTIMIZERS[spec.name](spec, params)
