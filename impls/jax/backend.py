"""The JAX Backend: variants, devices, and building a Program from a spec.

Variants: `jit` (the default) runs each recurrence as a rolled `lax.scan`;
`scan_unroll` is the same program with `lax.scan(unroll=SCAN_UNROLL)`, the
usual JAX knob for recurrences with little work per step, so it only applies
to models with a recurrent layer; `flax` (the idiomatic variant, every task)
runs the model as a Flax linen module (nn.Dense, nn.Conv, nn.max_pool,
nn.RNN over SimpleCell / OptimizedLSTMCell / GRUCell; `model.flax_module`)
on canonical parameters mapped into Flax's tree inside the trace. This module
must not import `bench`.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

from impls.base import Backend, BackendError, Program
from impls.jax import model
from impls.jax.program import JaxProgram
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

SCAN_UNROLL = 8  # steps per scan iteration in the `scan_unroll` variant
_UNROLL = {"jit": 1, "scan_unroll": SCAN_UNROLL}
_PLATFORMS = {"cpu": "cpu", "cuda": "gpu"}


def _jax_device(device: str) -> jax.Device:
    """The jax.Device for a device name `Backend.build` has already checked."""
    return jax.devices(_PLATFORMS[device])[0]


def _require_flax() -> None:
    import importlib.util

    if importlib.util.find_spec("flax") is None:
        raise BackendError("the jax variant 'flax' needs Flax (pip install 'nnparity[jax]')")


class JaxBackend(Backend):
    name = "jax"
    variants = ("jit", "scan_unroll", "flax")
    recurrent_variants = ("scan_unroll",)
    # casting inside jit runs bfloat16 on CPU and GPU; TF32 and float16 with loss
    # scaling are GPU modes (XLA:CPU has no TF32 and emulates float16)
    precision_support = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "bf16", "fp16")}
    # speed settings of one program (impls.settings): `lax.scan`'s unroll (an int, or
    # True: fully unrolled) and the image layout ("nchw" or "nhwc", `model.forced_layout`)
    program_options = ("unroll", "layout")

    def __init__(self, intra_op: int) -> None:
        # the thread count `impls.jax` wrote into XLA_FLAGS before importing JAX
        self._intra_op = intra_op

    def version(self) -> str:
        return jax.__version__

    def threads(self) -> dict[str, int | str | None]:
        # XLA:CPU runs one executable's thunks on its intra-op pool; it has no
        # separate inter-op pool to set.
        return {"intra_op": self._intra_op, "inter_op": None, "inter_op_source": "none"}

    def devices(self) -> tuple[str, ...]:
        try:
            return ("cpu", "cuda") if jax.devices("gpu") else ("cpu",)
        except RuntimeError:
            return ("cpu",)

    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec,
               precision: str = "fp32", options: dict | None = None) -> Program:
        if variant == "flax":
            _require_flax()
        options = options or {}
        layout = options.get("layout")
        if layout not in (None, "nchw", "nhwc"):
            raise BackendError(f"jax layout {layout!r}; choose from nchw, nhwc")
        unroll = options.get("unroll", _UNROLL.get(variant, 1))
        with model.forced_layout(layout) if layout else contextlib.nullcontext():
            return JaxProgram(spec, params, unroll=unroll, dtype=dtype,
                              device=_jax_device(device), optimizer=optimizer,
                              precision=precision, flax=variant == "flax")
