"""The backend interface every framework implements (DESIGN.md §3).

A `Backend` builds a `Program` from a framework-free `ModelSpec` plus canonical
NumPy parameters. A `Program` owns the parameters and optimiser state in the
framework's native layout on one device, in one dtype, and offers forward,
loss-and-gradients and an optimiser step. Layout conversions happen in
`Backend.build` and in `grads_to_canonical` / `params`, never inside the timed
methods. This module imports no framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec, Recurrent

DTYPES = ("float32", "float64")


class BackendError(RuntimeError):
    """A backend cannot do what was asked (not installed, no such device, ...)."""


class Program(ABC):
    """One model on one backend/variant/dtype/device, ready to run.

    Arrays passed to `forward`, `loss_and_grads` and `step` are native arrays
    made by `put`; their results are native too (no host round-trip). Use
    `sync` to wait for a result and `to_numpy` to read one.
    """

    #: how floating-point matmuls run, recorded with results ("fp32", "fp64", "tf32", ...)
    precision: str = ""

    @abstractmethod
    def put(self, array: np.ndarray) -> Any:
        """Copy a NumPy array to the device: floats in the program's dtype,
        integer arrays (class labels) as integers."""

    @abstractmethod
    def forward(self, x: Any) -> Any:
        """Inference output (logits or predictions), shape (N, *output_shape)."""

    @abstractmethod
    def loss_and_grads(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Scalar loss and gradients of every parameter, in native form."""

    @abstractmethod
    def step(self, x: Any, y: Any) -> Any:
        """One optimiser update in place; returns the loss before the update."""

    @abstractmethod
    def sync(self, value: Any = None) -> None:
        """Block until `value` (and all queued device work) is computed."""

    @abstractmethod
    def to_numpy(self, value: Any) -> np.ndarray:
        """A native array (or scalar) as a NumPy array."""

    @abstractmethod
    def grads_to_canonical(self, grads: Any) -> dict[str, np.ndarray]:
        """Gradients from `loss_and_grads`, by canonical name and layout."""

    @abstractmethod
    def params(self) -> dict[str, np.ndarray]:
        """Current parameters, by canonical name and layout."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window (no-op where there is no allocator)."""
        return None

    def peak_memory(self) -> int | None:
        """Peak bytes held by the framework's own allocator since the last reset,
        or None where the framework has no allocator statistics."""
        return None


class Backend(ABC):
    """A framework: which variants and devices it offers, and how to build."""

    name: ClassVar[str]
    #: execution variants; the first is the default
    variants: ClassVar[tuple[str, ...]]

    @abstractmethod
    def version(self) -> str:
        """The framework's version string."""

    @abstractmethod
    def devices(self) -> tuple[str, ...]:
        """Devices usable now: always ("cpu", ...), plus "cuda" when present."""

    def supports(self, spec: ModelSpec, variant: str) -> bool:
        """Whether `variant` is meaningful for `spec` (e.g. fused-RNN variants
        only for models with a recurrent layer)."""
        return variant in self.variants

    @abstractmethod
    def build(
        self,
        spec: ModelSpec,
        params: dict[str, np.ndarray],
        *,
        variant: str,
        dtype: str,
        device: str,
        optimizer: OptimizerSpec,
    ) -> Program:
        """Convert canonical `params` to native layout once and return a Program."""


def has_recurrent(spec: ModelSpec) -> bool:
    return any(isinstance(layer, Recurrent) for layer in spec.layers)
