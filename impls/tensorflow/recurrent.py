"""Recurrent layers of the TensorFlow backend: primitive-op cells, and Keras' fused layers.

`recurrent` runs RNN, LSTM or GRU from primitive ops, looped with
`tf.while_loop` (the "function" and "xla" variants), in the canonical layout
(w_ih (F, G*H), w_hh (H, G*H), two biases; gates LSTM i,f,g,o and GRU r,z,n
with the reset gate after the hidden matmul), so its parameters need no
conversion. Each step computes x_t @ w_ih + bias, h @ w_hh and the gate math.
RNN and LSTM add b_ih + b_hh as one bias there (`FOLDED_BIAS`); GRU adds b_ih
there and b_hh with the hidden matmul, since its reset gate multiplies
h W_hn + b_hn: all four backends' hand-written cells do this same arithmetic.
The others batch the input projection of all steps before the loop; here it
runs step by step (see `recurrent` for the measured reason). The loop carries
only the state (and the outputs only when they are returned), as Keras' own
loop does; the graph executor and XLA compile it once whatever the sequence
length. Keras' cells differ: each adds its bias (LSTM, SimpleRNN: one bias
standing for b_ih + b_hh) inside every step.

`FusedRecurrent` is the framework's own fused layer for the "keras" variant:
Keras 3 SimpleRNN, LSTM or GRU (reset_after=True), cuDNN kernels on GPU and
Keras' own `tf.while_loop` on CPU. It takes its weights in Keras layout;
`model` converts canonical parameters to it and back. Keras must run on
TensorFlow here (KERAS_BACKEND=tensorflow); any other backend is a clear
`BackendError`, not a crash inside a trace.

Input is batch-first (N, T, F), the initial state zero. This module must not
import `bench`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from impls.base import BackendError
from tasks.spec import Recurrent


def _rnn_cell(w_hh, b_hh):
    del b_hh  # folded into the input projection (FOLDED_BIAS)

    def cell(h, gi):
        return tf.tanh(gi + tf.matmul(h, w_hh))

    return cell


def _rnn_relu_cell(w_hh, b_hh):
    del b_hh  # folded into the input projection (FOLDED_BIAS)

    def cell(h, gi):
        return tf.nn.relu(gi + tf.matmul(h, w_hh))

    return cell


def _lstm_cell(w_hh, b_hh):
    del b_hh  # folded into the input projection (FOLDED_BIAS)

    def cell(state, gi):
        h, c = state
        i, f, g, o = tf.split(gi + tf.matmul(h, w_hh), 4, axis=-1)
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


def _cell(cell: str, activation: str, w_hh, b_hh):
    """The step of `cell`; the vanilla cell's with its `activation` ("tanh" or "relu")."""
    make = _rnn_relu_cell if cell == "rnn" and activation == "relu" else _CELLS[cell]
    return make(w_hh, b_hh)

#: cells whose b_hh is added once, with b_ih, in the input projection (as in
#: every backend's hand-written cells); GRU keeps b_hh inside the step
FOLDED_BIAS = ("rnn", "lstm")


def recurrent(
    x: tf.Tensor,
    w_ih: tf.Tensor,
    w_hh: tf.Tensor,
    b_ih: tf.Tensor,
    b_hh: tf.Tensor,
    cell: str,
    return_sequences: bool,
    activation: str = "tanh",
) -> tf.Tensor:
    """(N, T, F) -> (N, H) last state, or (N, T, H) with `return_sequences`."""
    step = _cell(cell, activation, w_hh, b_hh)
    is_lstm = cell == "lstm"
    bias = b_ih + b_hh if cell in FOLDED_BIAS else b_ih
    steps = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    # Time-major, so the loop reads the leading axis. The input projection runs
    # inside the step, as in Keras' cells: the same FLOPs as one matmul before
    # the loop, but TF's while_loop gradient through a TensorArray of
    # precomputed (T, N, G*H) projections measured 1.3-1.8x slower for an LSTM
    # (T=100, H=128) on CPU than reading the (T, N, F) input instead.
    inputs = tf.TensorArray(x.dtype, size=steps).unstack(tf.transpose(x, (1, 0, 2)))
    zero = tf.zeros((tf.shape(x)[0], w_hh.shape[0]), dtype=x.dtype)  # w_hh is (H, G*H)
    state = (zero, zero) if is_lstm else zero
    # A while_loop carrying only the state (and the outputs only when they are
    # returned), as Keras' own loop does: tf.scan would stack every step's
    # state, both of them for an LSTM, even when only the last one is used.
    outputs = tf.TensorArray(x.dtype, size=steps) if return_sequences else None

    def body(t, state, *outs):
        state = step(state, tf.matmul(inputs.read(t), w_ih) + bias)
        if outs:
            outs = (outs[0].write(t, state[0] if is_lstm else state),)
        return (t + 1, state, *outs)

    loop_vars = (tf.constant(0), state, *([outputs] if return_sequences else []))
    result = tf.while_loop(lambda t, *_: t < steps, body, loop_vars,
                           maximum_iterations=steps, parallel_iterations=32, swap_memory=True)
    if return_sequences:
        return tf.transpose(result[2].stack(), (1, 0, 2))
    return result[1][0] if is_lstm else result[1]


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


class FusedRecurrent:
    """One Keras recurrent layer whose variables the program owns.

    `weights` are the kernel, recurrent kernel and bias in Keras layout; the
    layer's own variables take these values and are what the tape
    differentiates, the optimiser assigns and the layer reads when called.
    """

    def __init__(
        self,
        layer: Recurrent,
        in_shape: tuple[int, ...],
        weights: list[np.ndarray],
        dtype: tf.DType,
        policy: str | None = None,
    ) -> None:
        keras = keras_module()
        self.layer = layer
        # `policy` (e.g. "mixed_bfloat16"): Keras' mixed precision, variables stay `dtype`
        common = dict(return_sequences=layer.return_sequences, dtype=policy or dtype.name,
                      name=layer.name)
        if layer.cell == "rnn":
            k = keras.layers.SimpleRNN(layer.hidden, activation=layer.activation, **common)
        elif layer.cell == "lstm":
            k = keras.layers.LSTM(layer.hidden, **common)
        else:
            k = keras.layers.GRU(layer.hidden, reset_after=True, **common)
        k.build((None, *in_shape))
        self.module = k
        cell = k.cell
        # The tf.Variables under Keras' wrappers.
        self._variables = [cell.kernel.value, cell.recurrent_kernel.value, cell.bias.value]
        for var, value in zip(self._variables, weights, strict=True):
            var.assign(value)

    def parameters(self) -> list[tf.Variable]:
        """Kernel, recurrent kernel and bias, in Keras layout."""
        return list(self._variables)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.module(x)


def recurrent_probed(
    x: tf.Tensor,
    w_ih: tf.Tensor,
    w_hh: tf.Tensor,
    b_ih: tf.Tensor,
    b_hh: tf.Tensor,
    cell: str,
    return_sequences: bool,
    probe: tf.Tensor,
    activation: str = "tanh",
) -> tf.Tensor:
    """`recurrent` with `probe[:, t]` (N, T, S) added to each state: h_t (S = H), and
    for an LSTM (h_t, c_t) (S = 2H).

    With a zero probe the output is `recurrent`'s; the gradient with respect
    to the probe is dL/ds_t through every path (`Program.hidden_state_grads`).
    Primitive-op cells only: a Keras layer's loop has no place for a probe.
    """
    step = _cell(cell, activation, w_hh, b_hh)
    is_lstm = cell == "lstm"
    # the same projection as `recurrent`: b_hh folded in for the cells in FOLDED_BIAS
    gi = tf.matmul(tf.transpose(x, (1, 0, 2)), w_ih) + (
        b_ih + b_hh if cell in FOLDED_BIAS else b_ih)
    probe_tm = tf.transpose(probe, (1, 0, 2))

    hid = w_hh.shape[0]

    def probed(state, inputs):
        gi_t, p_t = inputs
        if is_lstm:  # the probe's second half goes on c_t, before h_t reads it
            h, c = state
            i, f, g, o = tf.split(gi_t + tf.matmul(h, w_hh), 4, axis=-1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g) + p_t[:, hid:]
            return tf.sigmoid(o) * tf.tanh(c) + p_t[:, :hid], c
        return step(state, gi_t) + p_t

    zero = tf.zeros((tf.shape(x)[0], w_hh.shape[0]), dtype=x.dtype)
    states = tf.scan(probed, (gi, probe_tm), initializer=(zero, zero) if is_lstm else zero)
    hs = states[0] if is_lstm else states
    return tf.transpose(hs, (1, 0, 2)) if return_sequences else hs[-1]
