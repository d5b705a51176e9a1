"""Optimiser definitions: the exact update rules every backend reproduces.

These are specifications, not implementations: each backend implements the
rule below for its own arrays, and trajectory tests hold them to it in float64.
`t` counts steps from 1; state starts at zero.

SGD with momentum (PyTorch convention, dampening 0, no Nesterov):
    v <- momentum * v + g
    p <- p - lr * v

Adam (Kingma & Ba 2015, bias-corrected, eps outside the square root):
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g * g
    p <- p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)
"""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class OptimizerSpec:
    """Which rule and its hyper-parameters; defaults are the common ones."""

    name: str = "sgd"
    lr: float = 0.01  # step size, both rules
    momentum: float = 0.9  # SGD only
    beta1: float = 0.9  # Adam only
    beta2: float = 0.999  # Adam only
    eps: float = 1e-8  # Adam only

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            choices = ", ".join(OPTIMIZERS)
            raise ValueError(f"unknown optimizer {self.name!r}; choose from {choices}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr!r}")
