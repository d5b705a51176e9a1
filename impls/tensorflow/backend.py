"""The TensorFlow Backend: variants, devices, and building a Program from a spec.

Variants: `function` (tf.function graphs of primitive ops; recurrences with
`tf.scan`), `xla` (the same graphs with `jit_compile=True`), and `keras`
(the same, with Keras 3 SimpleRNN/LSTM/GRU layers as the recurrent cells,
`recurrent.FusedRecurrent`; only for specs with a recurrent layer), and the
idiomatic variants for every task: `keras_layers` (every layer a Keras 3
layer, Dense, Conv2D, MaxPooling2D, SimpleRNN/LSTM/GRU, called under
`tf.function` as Keras users write a custom training step) and `keras_xla`
(the same with `jit_compile=True`). This module must not import `bench`.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import tensorflow as tf

from impls.base import COMPUTE_DTYPES, Backend, Program
from impls.tensorflow.model import build_model
from impls.tensorflow.program import DEVICES, TensorFlowProgram
from impls.threads import threads
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

#: variant -> (XLA-compiled?, Keras recurrent layers?, Keras layers throughout?)
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "function": (False, False, False),
    "xla": (True, False, False),
    "keras": (False, True, False),
    "keras_layers": (False, True, True),
    "keras_xla": (True, True, True),
}


#: compute dtype of each reduced mode that casts (tf32 changes kernels, not dtypes)
_COMPUTE = {mode: getattr(tf, name) for mode, name in COMPUTE_DTYPES.items()}


class TensorFlowBackend(Backend):
    name = "tensorflow"
    variants: ClassVar[tuple[str, ...]] = tuple(VARIANTS)
    recurrent_variants: ClassVar[tuple[str, ...]] = tuple(
        v for v, (_, keras_rnn, everywhere) in VARIANTS.items() if keras_rnn and not everywhere)
    # bfloat16 compute runs on CPU (oneDNN) and GPU; TF32 and float16 with loss
    # scaling are GPU modes
    precision_support: ClassVar[dict[str, tuple[str, ...]]] = {
        "cpu": ("fp32", "bf16"),
        "cuda": ("fp32", "tf32", "bf16", "fp16"),
    }

    def version(self) -> str:
        return tf.__version__

    def threads(self) -> dict[str, int | str | None]:
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        if inter:
            source = "user"
        elif os.environ.get("TF_NUM_INTEROP_THREADS", "").strip().isdigit():
            inter, source = int(os.environ["TF_NUM_INTEROP_THREADS"]), "TF_NUM_INTEROP_THREADS"
        else:
            # TF's default: one inter-op thread per core this process may run on
            inter, source = len(os.sched_getaffinity(0)), "default"
        return {"intra_op": intra or threads(), "inter_op": inter, "inter_op_source": source}

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if tf.config.list_physical_devices("GPU") else ("cpu",)

    def supports_precision(self, spec: ModelSpec, variant: str, dtype: str, device: str,
                           precision: str) -> bool:
        # the all-Keras variants build Keras layers in the variables' dtype and take no
        # compute dtype: a reduced mode there would silently run fp32, so it is n/a
        if VARIANTS[variant][2] and precision != "fp32":
            return False
        return super().supports_precision(spec, variant, dtype, device, precision)

    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec,
               precision: str = "fp32") -> Program:
        jit_compile, keras_rnn, keras_layers = VARIANTS[variant]
        tf_dtype = tf.as_dtype(dtype)
        compute = _COMPUTE.get(precision)
        with tf.device(DEVICES[device]):
            if compute is None:
                model = build_model(spec, params, tf_dtype, keras_rnn, keras_layers)
            else:
                model = build_model(spec, params, tf_dtype, keras_rnn, keras_layers,
                                    compute_dtype=compute)
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
