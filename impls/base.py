"""The backend interface every framework implements, and the rules all four share.

A `Backend` builds a `Program` from a framework-free `ModelSpec` plus canonical
NumPy parameters. A `Program` owns the parameters and optimiser state in the
framework's native layout on one device, in one dtype, and offers forward,
loss-and-gradients and an optimiser step. Layout conversions happen in
`Backend.build` and in `grads_to_canonical` / `params`, never inside the timed
methods. This module imports no framework.

Rules every backend applies the same way live here, once: which dtypes and
devices exist (`DTYPES`, `DEVICES`), the precision label a program records
(`precision_label`) and the integer dtype of class labels (`label_dtype`).
See docs/design.md for why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from tasks.optim import OptimizerSpec
from tasks.spec import Conv2D, Dense, MaxPool2D, ModelSpec, Recurrent

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")

#: The integer dtype class labels get in `Program.put`, per backend. JAX keeps
#: int32, its native index type (int64 is emulated on GPU); the others int64.
#: They are kept as they are for now (changing one changes what a backend
#: computes); this table is the one place that says which is which.
LABEL_DTYPES: dict[str, str] = {
    "numpy": "int64",
    "torch": "int64",
    "jax": "int32",
    "tensorflow": "int64",
}


def label_dtype(backend: str) -> np.dtype:
    """The integer dtype `backend` puts class labels in (see `LABEL_DTYPES`)."""
    return np.dtype(LABEL_DTYPES[backend])


def precision_label(dtype: str, device: str) -> str:
    """How floating-point matmuls run, as recorded in `Program.precision`.

    "fp64" for float64; "fp32" for float32 on CPU; "fp32 (tf32 off)" for
    float32 on GPU, where every backend's runtime configuration turns TF32 off
    so that GPU results are comparable with the float64 reference.
    """
    if dtype == "float64":
        return "fp64"
    return "fp32 (tf32 off)" if device == "cuda" else "fp32"


class BackendError(RuntimeError):
    """A backend cannot do what was asked (not installed, no such device, ...)."""


class Program(ABC):
    """One model on one backend/variant/dtype/device, ready to run.

    Arrays passed to `forward`, `loss_and_grads` and `step` are native arrays
    made by `put`; their results are native too (no host round-trip). Use
    `sync` to wait for a result and `to_numpy` to read one.
    """

    #: how floating-point matmuls run, recorded with results; `Backend.build`
    #: sets it from `precision_label(dtype, device)`
    precision: str = ""
    #: "window" when `reset_peak_memory` starts a new peak; "lifetime" when the
    #: framework cannot reset it and `peak_memory` is the process lifetime's
    peak_memory_scope: ClassVar[str] = "window"

    @abstractmethod
    def put(self, array: np.ndarray) -> Any:
        """Copy a NumPy array to the device: floats in the program's dtype,
        integer arrays (class labels) in the backend's `label_dtype`."""

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

    def piecewise_inputs(self, x: Any) -> dict[str, np.ndarray] | None:
        """What decides the linear piece of every piecewise-linear op, for batch `x`.

        By layer name (see `piecewise_layers`), in canonical layout, as NumPy
        arrays computed in the program's own dtype on its device: the
        pre-activation `z` of each ReLU layer (its mask is `z > 0`) and the
        input of each max-pool layer (its mask is the first maximum of each
        window, `impls.numpy.layers.maxpool2d_argmax`). The agreement check
        compares these masks with the float64 reference's and, where they
        differ (a "kink flip"), recomputes the reference on the backend's
        masks. The default, None, means the backend does not offer them; the
        check then compares against the plain reference only.
        """
        return None

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window (no-op where there is no allocator)."""
        return None

    def peak_memory(self) -> int | None:
        """Peak bytes held by the framework's own allocator since the last reset,
        or None where the framework has no allocator statistics."""
        return None


class Backend(ABC):
    """A framework: which variants and devices it offers, and how to build.

    `build` checks the request the same way for every backend, then calls the
    backend's `_build`, which converts canonical parameters to native layout,
    and labels the program's precision.
    """

    name: ClassVar[str]
    #: execution variants; the first is the default
    variants: ClassVar[tuple[str, ...]]
    #: variants that only apply to models with a recurrent layer (fused RNN layers, ...)
    recurrent_variants: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def version(self) -> str:
        """The framework's version string."""

    @abstractmethod
    def devices(self) -> tuple[str, ...]:
        """Devices usable now: always ("cpu", ...), plus "cuda" when present."""

    def supports(self, spec: ModelSpec, variant: str) -> bool:
        """Whether `variant` is meaningful for `spec`."""
        if variant not in self.variants:
            return False
        return has_recurrent(spec) if variant in self.recurrent_variants else True

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
        """Check the request, then convert canonical `params` to native layout once."""
        if variant not in self.variants:
            raise BackendError(f"unknown {self.name} variant {variant!r}; "
                               f"choose from {', '.join(self.variants)}")
        if not self.supports(spec, variant):
            raise BackendError(f"{self.name} variant {variant!r} needs a model with a "
                               "recurrent layer")
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        if device not in DEVICES:
            raise BackendError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
        if device not in self.devices():
            raise BackendError(f"device {device!r} is not available to {self.name} here "
                               f"(available: {', '.join(self.devices())})")
        missing = set(spec.param_shapes()) - set(params)
        if missing:
            raise BackendError(f"{self.name}: parameters missing: {', '.join(sorted(missing))}")
        program = self._build(spec, params, variant=variant, dtype=dtype, device=device,
                              optimizer=optimizer)
        program.precision = precision_label(dtype, device)
        return program

    @abstractmethod
    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec) -> Program:
        """Build a Program for a request `build` has already checked."""


def piecewise_layers(spec: ModelSpec) -> dict[str, str]:
    """Layer name -> "relu" or "maxpool" for each piecewise-linear op of `spec`."""
    out: dict[str, str] = {}
    for layer in spec.layers:
        if isinstance(layer, Dense | Conv2D) and layer.activation == "relu":
            out[layer.name] = "relu"
        elif isinstance(layer, MaxPool2D):
            out[layer.name] = "maxpool"
    return out


def has_recurrent(spec: ModelSpec) -> bool:
    """Whether `spec` has a recurrent layer (what `recurrent_variants` need)."""
    return any(isinstance(layer, Recurrent) for layer in spec.layers)
