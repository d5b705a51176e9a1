"""Keras 3 recurrent layers (SimpleRNN, LSTM, GRU with reset_after=True) as native cells.

These are the framework's own fused layers: cuDNN kernels on GPU, Keras' own
`tf.while_loop` on CPU. Their layouts differ from the canonical one, and the
conversions happen here, once, in both directions:

- LSTM gate order i,f,c,o equals canonical i,f,g,o; GRU's z,r,h swaps the
  first two canonical blocks r,z,n; the GRU bias is (2, 3H) = [b_ih; b_hh].
- SimpleRNN and LSTM keep ONE bias, standing for b_ih + b_hh. The loss depends
  only on that sum, so both canonical biases get its gradient. Under the
  reference rule both halves then carry identical optimiser state and move by
  the same update, so the sum moves by twice one update: its `update_scale`
  is 2, and reading it back splits the change from the start equally.

Keras must run on TensorFlow here (KERAS_BACKEND=tensorflow); any other
backend is a clear `BackendError`, not a crash inside a trace. This module
must not import `bench`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from impls.base import BackendError
from impls.tensorflow.layers import NativeParam, native
from tasks.spec import Recurrent


def keras_module():
    """Keras, checked to run on the TensorFlow backend."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise BackendError(
            f"the keras variant needs KERAS_BACKEND=tensorflow, but Keras runs on "
            f"{keras.backend.backend()!r} in this process"
        )
    return keras


def _swap_rz(a: np.ndarray) -> np.ndarray:
    """Swap the first two of three gate blocks on the last axis: r,z,n <-> z,r,n."""
    r, z, n = np.split(a, 3, axis=-1)
    return np.concatenate([z, r, n], axis=-1)


def _shared_bias(var: tf.Variable, b_ih: np.ndarray, b_hh: np.ndarray, name: str) -> NativeParam:
    start = var.numpy()
    ih, hh = f"{name}.b_ih", f"{name}.b_hh"

    def value(a: np.ndarray) -> dict[str, np.ndarray]:
        half = (a - start) / 2
        return {ih: b_ih.astype(a.dtype) + half, hh: b_hh.astype(a.dtype) + half}

    return NativeParam(var, lambda g: {ih: g, hh: g.copy()}, value, update_scale=2.0)


def keras_recurrent(
    layer: Recurrent, in_shape: tuple[int, ...], params: dict[str, np.ndarray], dtype: tf.DType
):
    """(apply, native params) for one recurrent layer as a Keras layer."""
    keras = keras_module()
    n = layer.name
    w_ih, w_hh = params[f"{n}.w_ih"], params[f"{n}.w_hh"]
    b_ih, b_hh = params[f"{n}.b_ih"], params[f"{n}.b_hh"]
    common = dict(return_sequences=layer.return_sequences, dtype=dtype.name, name=n)
    if layer.cell == "rnn":
        k = keras.layers.SimpleRNN(layer.hidden, activation="tanh", **common)
    elif layer.cell == "lstm":
        k = keras.layers.LSTM(layer.hidden, **common)
    else:
        k = keras.layers.GRU(layer.hidden, reset_after=True, **common)
    k.build((None, *in_shape))
    cell = k.cell
    # The tf.Variables under Keras' wrappers: what the tape differentiates and the
    # optimiser assigns, and what the layer reads when called.
    kernel, recurrent, bias = cell.kernel.value, cell.recurrent_kernel.value, cell.bias.value
    if layer.cell == "gru":
        kernel.assign(_swap_rz(w_ih))
        recurrent.assign(_swap_rz(w_hh))
        bias.assign(np.stack([_swap_rz(b_ih), _swap_rz(b_hh)]))

        def gru_bias(a: np.ndarray) -> dict[str, np.ndarray]:
            return {f"{n}.b_ih": _swap_rz(a[0]), f"{n}.b_hh": _swap_rz(a[1])}

        natives = [
            native(kernel, f"{n}.w_ih", lambda a: {f"{n}.w_ih": _swap_rz(a)}),
            native(recurrent, f"{n}.w_hh", lambda a: {f"{n}.w_hh": _swap_rz(a)}),
            NativeParam(bias, gru_bias, gru_bias),
        ]
    else:
        kernel.assign(w_ih)
        recurrent.assign(w_hh)
        bias.assign(b_ih + b_hh)
        natives = [
            native(kernel, f"{n}.w_ih"),
            native(recurrent, f"{n}.w_hh"),
            _shared_bias(bias, b_ih, b_hh, n),
        ]
    return k, natives
