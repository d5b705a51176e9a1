"""Recurrent layers of the TensorFlow backend from primitive ops, looped with `tf.scan`.

RNN, LSTM and GRU in the canonical layout (w_ih (F, G*H), w_hh (H, G*H), two
biases; gates LSTM i,f,g,o and GRU r,z,n with the reset gate after the hidden
matmul), so parameters need no conversion. The input projection for all time
steps is one matmul before the loop; only `h @ w_hh` and the gate math run
per step. `tf.scan` lowers to a `tf.while_loop`, which both the graph
executor and XLA compile once whatever the sequence length. This module must
not import `bench` or Keras.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from impls.tensorflow.layers import native, variable
from tasks.spec import Recurrent


def _rnn_cell(w_hh, b_hh):
    def cell(h, gi):
        return tf.tanh(gi + tf.matmul(h, w_hh) + b_hh)

    return cell


def _lstm_cell(w_hh, b_hh):
    def cell(state, gi):
        h, c = state
        i, f, g, o = tf.split(gi + tf.matmul(h, w_hh) + b_hh, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    return cell


def _gru_cell(w_hh, b_hh):
    def cell(h, gi):
        i_r, i_z, i_n = tf.split(gi, 3, axis=-1)
        h_r, h_z, h_n = tf.split(tf.matmul(h, w_hh) + b_hh, 3, axis=-1)
        r = tf.sigmoid(i_r + h_r)
        z = tf.sigmoid(i_z + h_z)
        n = tf.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h

    return cell


_CELLS = {"rnn": _rnn_cell, "lstm": _lstm_cell, "gru": _gru_cell}


def recurrent(layer: Recurrent, params: dict[str, np.ndarray], dtype: tf.DType):
    """(apply, native params) for one recurrent layer over batch-first (N, T, F) input."""
    names = [f"{layer.name}.{k}" for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    w_ih, w_hh, b_ih, b_hh = (variable(params[n], dtype) for n in names)
    cell = _CELLS[layer.cell](w_hh, b_hh)
    hidden, is_lstm, sequences = layer.hidden, layer.cell == "lstm", layer.return_sequences

    def apply(x: tf.Tensor) -> tf.Tensor:
        # Time-major, so the loop slices the leading axis; one matmul for all steps.
        gi = tf.matmul(tf.transpose(x, (1, 0, 2)), w_ih) + b_ih
        zero = tf.zeros((tf.shape(x)[0], hidden), dtype=x.dtype)
        states = tf.scan(cell, gi, initializer=(zero, zero) if is_lstm else zero)
        hs = states[0] if is_lstm else states  # (T, N, H)
        return tf.transpose(hs, (1, 0, 2)) if sequences else hs[-1]

    return apply, [native(v, n) for v, n in zip((w_ih, w_hh, b_ih, b_hh), names, strict=True)]
