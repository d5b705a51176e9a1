"""The TensorFlow Backend: variants, devices, and building a Program from a spec.

Variants: `function` (tf.function graphs of primitive ops; recurrences with
`tf.scan`), `xla` (the same graphs with `jit_compile=True`), and `keras`
(the same, with Keras 3 SimpleRNN/LSTM/GRU layers as the recurrent cells,
`recurrent.FusedRecurrent`; only for specs with a recurrent layer). This
module must not import `bench`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow as tf

from impls.base import Backend, Program
from impls.tensorflow.model import build_model
from impls.tensorflow.program import DEVICES, TensorFlowProgram
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

#: variant -> (XLA-compiled?, Keras recurrent layers?)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "function": (False, False),
    "xla": (True, False),
    "keras": (False, True),
}


#: compute dtype of each reduced mode that casts (tf32 changes kernels, not dtypes)
_COMPUTE = {"bf16": tf.bfloat16, "fp16": tf.float16}


class TensorFlowBackend(Backend):
    name = "tensorflow"
    variants: ClassVar[tuple[str, ...]] = tuple(VARIANTS)
    recurrent_variants: ClassVar[tuple[str, ...]] = tuple(
        v for v, (_, keras_rnn) in VARIANTS.items() if keras_rnn)
    # bfloat16 compute runs on CPU (oneDNN) and GPU; TF32 and float16 with loss
    # scaling are GPU modes
    precision_support: ClassVar[dict[str, tuple[str, ...]]] = {
        "cpu": ("fp32", "bf16"),
        "cuda": ("fp32", "tf32", "bf16", "fp16"),
    }

    def version(self) -> str:
        return tf.__version__

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if tf.config.list_physical_devices("GPU") else ("cpu",)

    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec,
               precision: str = "fp32") -> Program:
        jit_compile, keras_rnn = VARIANTS[variant]
        tf_dtype = tf.as_dtype(dtype)
        compute = _COMPUTE.get(precision)
        with tf.device(DEVICES[device]):
            if compute is None:
                model = build_model(spec, params, tf_dtype, keras_rnn)
            else:
                model = build_model(spec, params, tf_dtype, keras_rnn, compute_dtype=compute)
        if precision == "fp32":
            program = TensorFlowProgram(
                spec, model, dtype=tf_dtype, device=device, optimizer=optimizer,
                jit_compile=jit_compile,
            )
        else:
            program = TensorFlowProgram(spec, model, dtype=tf_dtype, device=device,
                                        optimizer=optimizer, jit_compile=jit_compile,
                                        precision=precision)
        program.keras_recurrent = keras_rnn
        return program
