"""The torch Backend: variants, devices, and building a Program from a spec.

Variants: "eager" (default; every layer in primitive ops, recurrences as a
Python loop with the cell written out), "compile" (the same functions under
`torch.compile`), "native" (recurrent layers as torch's fused modules,
cuDNN on GPU, the rest in primitive ops; only for specs with a recurrent
layer) and "nn" (the idiomatic variant: every layer a torch.nn module,
nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.Flatten, nn.RNN/LSTM/GRU, for every
task). This module must not
import `bench`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from impls.base import Backend, Program
from impls.torch.model import TorchModel
from impls.torch.program import TorchProgram
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _disable_tf32() -> None:
    """Full fp32 matmuls and convolutions on GPU, so agreement checks mean something."""
    cudnn = torch.backends.cudnn
    if hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision"):
        # torch >= 2.9 API; mixing it with the legacy allow_tf32 flags is an error
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        cudnn.conv.fp32_precision = "ieee"
        cudnn.rnn.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        cudnn.allow_tf32 = False


class TorchBackend(Backend):
    name: ClassVar[str] = "torch"
    variants: ClassVar[tuple[str, ...]] = ("eager", "compile", "native", "nn")
    recurrent_variants: ClassVar[tuple[str, ...]] = ("native",)
    # autocast runs bfloat16 on CPU and GPU; TF32 and float16 with loss scaling
    # are GPU modes (CPU autocast float16 has no fast kernels to measure)
    precision_support: ClassVar[dict[str, tuple[str, ...]]] = {
        "cpu": ("fp32", "bf16"),
        "cuda": ("fp32", "tf32", "bf16", "fp16"),
    }
    # speed settings of one program (impls.settings; TorchProgram says what each does)
    program_options: ClassVar[tuple[str, ...]] = ("compile_mode", "fullgraph", "channels_last",
                                                  "inference_mode", "cudnn_benchmark")

    def version(self) -> str:
        return torch.__version__

    def supports_precision(self, spec: ModelSpec, variant: str, dtype: str, device: str,
                           precision: str) -> bool:
        # The fused nn.LSTM under CPU bf16 autocast goes to oneDNN, which fails to build
        # its primitive ("could not create a primitive descriptor for the LSTM forward
        # propagation primitive", torch 2.13 on a CPU without native bf16): n/a, not an error.
        if variant == "native" and device == "cpu" and precision != "fp32":
            return False
        return super().supports_precision(spec, variant, dtype, device, precision)


    def threads(self) -> dict[str, int | str | None]:
        from impls.threads import interop_threads

        return {"intra_op": torch.get_num_threads(),
                "inter_op": torch.get_num_interop_threads(),
                "inter_op_source": "default" if interop_threads() is None else "user"}

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec,
               precision: str = "fp32", options: dict | None = None) -> Program:
        if device == "cuda":
            _disable_tf32()
        model = TorchModel(spec, native_rnn=variant == "native", nn_modules=variant == "nn")
        return TorchProgram(
            model,
            params,
            compiled=variant == "compile",
            dtype=_DTYPES[dtype],
            device=torch.device(device),
            optimizer=optimizer,
            precision=precision,
            options=options,
        )
