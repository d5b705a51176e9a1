"""The TensorFlow Backend: variants, devices, and building a Program from a spec.

Variants: `function` (tf.function graphs of primitive ops; recurrences with
`tf.scan`), `xla` (the same graphs with `jit_compile=True`), and `keras`
(the same, with Keras 3 SimpleRNN/LSTM/GRU layers as the recurrent cells;
only for specs with a recurrent layer). This module must not import `bench`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow as tf

from impls.base import DTYPES, Backend, BackendError, Program, has_recurrent
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


class TensorFlowBackend(Backend):
    name = "tensorflow"
    variants: ClassVar[tuple[str, ...]] = tuple(VARIANTS)

    def version(self) -> str:
        return tf.__version__

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if tf.config.list_physical_devices("GPU") else ("cpu",)

    def supports(self, spec: ModelSpec, variant: str) -> bool:
        if variant not in VARIANTS:
            return False
        return has_recurrent(spec) if VARIANTS[variant][1] else True

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
        if variant not in VARIANTS:
            raise BackendError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        if not self.supports(spec, variant):
            raise BackendError(f"variant {variant!r} needs a model with a recurrent layer")
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        if device not in DEVICES:
            raise BackendError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
        if device not in self.devices():
            raise BackendError(f"device {device!r} not available to TensorFlow on this machine")
        jit_compile, keras_rnn = VARIANTS[variant]
        tf_dtype = tf.as_dtype(dtype)
        with tf.device(DEVICES[device]):
            model = build_model(spec, params, tf_dtype, keras_rnn)
        return TensorFlowProgram(
            spec, model, dtype=tf_dtype, device=device, optimizer=optimizer,
            jit_compile=jit_compile,
        )
