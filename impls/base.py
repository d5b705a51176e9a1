"""The backend interface every framework implements, and the rules all four share.

A `Backend` builds a `Program` from a framework-free `ModelSpec` plus canonical
NumPy parameters. A `Program` owns the parameters and optimiser state in the
framework's native layout on one device, in one dtype, and offers forward,
loss-and-gradients and an optimiser step. Layout conversions happen in
`Backend.build` and in `grads_to_canonical` / `params`, never inside the timed
methods. This module imports no framework.

Rules every backend applies the same way live here, once, framework-free (as
Keras 3 keeps its backends' shared code in `backend/common/`): which dtypes and
devices exist (`DTYPES`, `DEVICES`), which precision modes exist
(`PRECISIONS`, strict `STRICT`) and the dtype each reduced one computes in
(`COMPUTE_DTYPES`), the precision label a program records (`precision_label`),
fp16's dynamic loss scaling (`LOSS_SCALE`, `next_loss_scale`), the integer
dtype of class labels (`label_dtype`) and the shapes of the hidden-state probes
(`probe_shapes`). See docs/design.md for why.

Precision modes are a property of one Program, never of the process: a
backend applies a mode around (or inside) the program's own calls and
restores whatever was set before, so a TF32 program cannot leave TF32 on for
the strict program built after it in the same worker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from impls.errors import BackendError
from impls.threads import threads as intra_op_threads
from tasks.optim import OptimizerSpec
from tasks.spec import Conv2D, Dense, MaxPool2D, ModelSpec, Recurrent

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")

#: Precision modes, the first strict (today's float32 with TF32 off; float64
#: programs are always strict). The others are float32 programs whose
#: parameters and optimiser state stay float32 while compute runs lower:
#: "tf32" TensorFloat-32 matmuls/convolutions (GPU), "bf16" bfloat16 compute,
#: "fp16" float16 compute with dynamic loss scaling (GPU).
STRICT = "fp32"
PRECISIONS = (STRICT, "tf32", "bf16", "fp16")
#: Dynamic loss scaling for "fp16", the same in every backend (torch.amp.GradScaler's
#: defaults): initial scale, growth and backoff factors, finite steps between growths.
LOSS_SCALE = (2.0**16, 2.0, 0.5, 2000)
#: The compute dtype of each reduced mode, by the name every framework gives it
#: (`torch.bfloat16`, `jnp.bfloat16`, `tf.bfloat16`, ...).
COMPUTE_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
#: What each mode means, as recorded in `Program.precision` (see `precision_label`).
PRECISION_LABELS = {
    "tf32": "tf32 (TensorFloat-32 matmuls/convolutions)",
    "bf16": "bf16 (bfloat16 compute, float32 params and optimiser state)",
    "fp16": "fp16 (float16 compute, float32 params, dynamic loss scaling)",
}

#: The integer dtype class labels get in `Program.put`, per backend: int64 in all
#: four, so every backend indexes with the same type (torch's cross-entropy
#: needs int64; JAX runs with x64 enabled, so int64 is a real dtype there too).
#: The table stays so a backend that must differ says so in one place.
LABEL_DTYPES: dict[str, str] = {
    "numpy": "int64",
    "torch": "int64",
    "jax": "int64",
    "tensorflow": "int64",
}


def label_dtype(backend: str) -> np.dtype:
    """The integer dtype `backend` puts class labels in (see `LABEL_DTYPES`)."""
    return np.dtype(LABEL_DTYPES[backend])


def precision_label(dtype: str, device: str, precision: str = STRICT) -> str:
    """How floating-point matmuls run, as recorded in `Program.precision`.

    "fp64" for float64; "fp32" for float32 on CPU; "fp32 (tf32 off)" for
    float32 on GPU, where every backend's runtime configuration turns TF32 off
    so that GPU results are comparable with the float64 reference; a reduced
    mode's entry of `PRECISION_LABELS` otherwise.
    """
    if precision != STRICT:
        return PRECISION_LABELS[precision]
    if dtype == "float64":
        return "fp64"
    return "fp32 (tf32 off)" if device == "cuda" else "fp32"


class Program(ABC):
    """One model on one backend/variant/dtype/device, ready to run.

    Arrays passed to `forward`, `loss_and_grads` and `step` are native arrays
    made by `put`; their results are native too (no host round-trip). Use
    `sync` to wait for a result and `to_numpy` to read one.
    """

    #: how floating-point matmuls run, recorded with results; `Backend.build`
    #: sets it from `precision_label(dtype, device)`
    precision: str = ""
    #: the precision mode (`PRECISIONS`) the program applies around its own calls
    precision_mode: str = STRICT
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

    def hidden_state_grads(self, x: Any, y: Any) -> dict[str, np.ndarray]:
        """dL/ds_t of every recurrent layer's state at every step: {layer name: (N, T, S)}.

        The state s_t is h_t (S = H); for an LSTM it is (h_t, c_t) (S = 2H, dL/dh_t
        then dL/dc_t; see `state_width`), since its memory is the cell state.
        The loss is the spec's (the batch mean), so each sample's slice is 1/N
        of the gradient of its own loss. Backends get it by adding a zero
        "probe" tensor to each state s_t and differentiating the loss
        with respect to the probes; the NumPy reference reads it off its BPTT.
        Returned as NumPy arrays in the program's dtype (it is never timed).
        Programs whose recurrent layers are fused kernels (torch's native
        variant, Keras layers) cannot add a probe inside the loop and raise
        BackendError, as does this default: "not supported".
        """
        raise BackendError(f"{type(self).__name__}: hidden-state gradients are not supported")


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
    #: precision modes this backend offers, per device (`precisions` reads it);
    #: strict fp32 everywhere unless a backend declares more
    precision_support: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": (STRICT,),
                                                               "cuda": (STRICT,)}
    #: build options (`build(options=...)`) this backend's programs honour: the speed
    #: settings of `impls.settings` that are a property of one program; none by default
    program_options: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def version(self) -> str:
        """The framework's version string."""

    @abstractmethod
    def devices(self) -> tuple[str, ...]:
        """Devices usable now: always ("cpu", ...), plus "cuda" when present."""

    def threads(self) -> dict[str, int | str | None]:
        """The thread counts this framework runs with, as recorded with every run.

        `intra_op`: threads one op may use; `inter_op`: ops that may run at once,
        None where the framework has no inter-op pool; `inter_op_source`: "default"
        (the framework's own choice), "user" (`impls.threads.interop_threads`) or
        the environment variable that set it. See `impls.threads`.
        """
        return {"intra_op": intra_op_threads(), "inter_op": None, "inter_op_source": "none"}

    def supports(self, spec: ModelSpec, variant: str) -> bool:
        """Whether `variant` is meaningful for `spec`."""
        if variant not in self.variants:
            return False
        return has_recurrent(spec) if variant in self.recurrent_variants else True

    def precisions(self, device: str) -> tuple[str, ...]:
        """Precision modes this backend offers on `device` (strict fp32 always)."""
        return self.precision_support.get(device, (STRICT,))

    def supports_precision(self, spec: ModelSpec, variant: str, dtype: str, device: str,
                           precision: str) -> bool:
        """Whether `precision` applies to this request. Reduced modes are float32
        programs only (float64 is the strict reference dtype); a backend overrides
        this where one of its variants cannot run a mode it offers otherwise."""
        if precision == STRICT:
            return True
        return dtype == "float32" and precision in self.precisions(device)

    def build(
        self,
        spec: ModelSpec,
        params: dict[str, np.ndarray],
        *,
        variant: str,
        dtype: str,
        device: str,
        optimizer: OptimizerSpec,
        precision: str = STRICT,
        options: Mapping[str, Any] | None = None,
    ) -> Program:
        """Check the request, then convert canonical `params` to native layout once.

        `precision` is a mode of `PRECISIONS`; one the backend does not offer for
        this request is a BackendError (the matrix leaves such cells out as n/a).
        `options` are speed settings of this one program (`program_options`; see
        `impls.settings`); an option the backend does not declare is a BackendError."""
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
        if precision not in PRECISIONS:
            raise BackendError(f"unknown precision {precision!r}; "
                               f"choose from {', '.join(PRECISIONS)}")
        if not self.supports_precision(spec, variant, dtype, device, precision):
            raise BackendError(f"{self.name} {variant} has no {precision} mode for {dtype} "
                               f"on {device} (offers: {', '.join(self.precisions(device))})")
        unknown = sorted(set(options or {}) - set(self.program_options))
        if unknown:
            raise BackendError(f"{self.name} has no build option {', '.join(unknown)} "
                               f"(offers: {', '.join(self.program_options) or 'none'})")
        # the call every backend had before precision modes and options, when neither is asked
        extra: dict[str, Any] = {} if precision == STRICT else {"precision": precision}
        if options:
            extra["options"] = dict(options)
        program = self._build(spec, params, variant=variant, dtype=dtype, device=device,
                              optimizer=optimizer, **extra)
        program.precision = precision_label(dtype, device, precision)
        program.precision_mode = precision
        return program

    @abstractmethod
    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec) -> Program:
        """Build a Program for a request `build` has already checked."""


def next_loss_scale(where: Callable, isfinite: Callable, scale: Any, good: Any, finite: Any,
                    factors: tuple[float, float, int] = LOSS_SCALE[1:]) -> tuple[Any, Any]:
    """fp16's dynamic loss scale after one step, as torch.amp.GradScaler updates it with
    `LOSS_SCALE`'s growth, backoff and interval (`factors`): `(scale, good)`, where
    `good` counts the finite steps since the scale last changed and `finite` says
    whether this step's gradients were all finite.

    An overflow multiplies the scale by the backoff factor and restarts the count; the
    `interval`-th finite step in a row multiplies it by the growth factor (unless that
    is not finite) and restarts the count. Framework-free: `where` and `isfinite` are the
    backend's own (`jnp.where`, `tf.where`, `torch.where`, ...), the rest are its
    0-d tensors, so the rule runs inside a jitted or traced step."""
    growth, backoff, interval = factors
    count = where(finite, good + 1, 0 * good)
    grow = count >= interval
    grown = scale * growth
    scale = where(finite, where(grow & isfinite(grown), grown, scale), scale * backoff)
    return scale, where(grow, 0 * count, count)


def probe_shapes(spec: ModelSpec, batch: int) -> dict[str, tuple[int, int, int]]:
    """The (N, T, S) shape of the probe `Program.hidden_state_grads` adds to each
    recurrent layer's states, by layer name: batch, the layer's sequence length and
    its `state_width`."""
    return {layer.name: (batch, shape[0], state_width(layer))
            for layer, shape in zip(spec.layers, spec.shapes(), strict=False)
            if isinstance(layer, Recurrent)}


def state_width(layer: Recurrent) -> int:
    """Width of a recurrent layer's state as `hidden_state_grads` reports it: h_t, and
    for an LSTM also its cell state c_t (the memory its gates protect)."""
    return 2 * layer.hidden if layer.cell == "lstm" else layer.hidden


def check_recurrent(spec: ModelSpec) -> None:
    """BackendError unless `spec` has a recurrent layer (for `hidden_state_grads`)."""
    if not has_recurrent(spec):
        raise BackendError("hidden-state gradients need a model with a recurrent layer")


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
