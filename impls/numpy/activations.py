"""Elementwise activations for the NumPy reference, forward and backward.

Each backward takes the pre-activation `z` and the output `a` (whichever it
needs is cheaper than recomputing) and never changes the dtype of its inputs.
This module must not import any framework, nor `bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, written via tanh so it never overflows for large |z|."""
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


def _identity(z: np.ndarray) -> np.ndarray:
    return z


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def _identity_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return da


def _sigmoid_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return da * a * (1.0 - a)


def _tanh_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return da * (1.0 - a * a)


def _relu_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    # The derivative at exactly 0 is taken as 0, as in PyTorch, JAX and TF.
    return da * (z > 0)


# name -> (forward(z) -> a, backward(da, z, a) -> dz)
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "identity": (_identity, _identity_grad),
    "sigmoid": (sigmoid, _sigmoid_grad),
    "tanh": (np.tanh, _tanh_grad),
    "relu": (_relu, _relu_grad),
}


def activate(name: str, z: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[name][0](z)


def activate_backward(name: str, da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[name][1](da, z, a)
