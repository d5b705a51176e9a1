"""The TensorFlow backend: `tf.function` graphs, with and without XLA, and Keras RNN layers.

Importing this package imports TensorFlow, so `impls.load("tensorflow")` is the
only way in; `impls` and `bench` must never import it at package import. The
runtime is configured here, before any op runs: the shared thread policy
(`impls.threads`), GPU memory growth (so backends can share one GPU) and TF32
off (so float32 agreement checks on GPU compare true fp32). Nothing else may
live here but `BACKEND` and `THREADS`; no module of this package may import
`bench`.
"""

from __future__ import annotations

import os

# TF reads its log level at import; the oneDNN banner printed before absl starts
# cannot be silenced this way, but every later info line can.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from impls.threads import interop_threads, threads  # noqa: E402


def _configure_runtime() -> None:
    n = threads()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        # Inter-op threads stay at TF's default (or TF_NUM_INTEROP_THREADS) unless
        # the user asked: one inter-op thread serialises independent ops and made
        # an idiomatic Keras MLP 1.3x slower on two cores (issue 10).
        interop = interop_threads()
        if interop is not None:
            tf.config.threading.set_inter_op_parallelism_threads(interop)
    except RuntimeError:
        # The runtime already started (TF was used before this import); the
        # counts it runs with are reported by `THREADS` below, not guessed.
        pass
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # GPU already initialised by someone else
            pass
    tf.config.experimental.enable_tensor_float_32_execution(False)


_configure_runtime()

#: (intra-op, inter-op) thread counts TensorFlow actually runs with (0 = TF's default,
#: which TF_NUM_INTEROP_THREADS may set; else one per schedulable core)
THREADS = (
    tf.config.threading.get_intra_op_parallelism_threads(),
    tf.config.threading.get_inter_op_parallelism_threads(),
)

from impls.tensorflow.backend import TensorFlowBackend  # noqa: E402

BACKEND = TensorFlowBackend()

__all__ = ["BACKEND", "THREADS"]
