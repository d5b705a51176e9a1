"""Recurrent layers of the NumPy reference: RNN, LSTM and GRU with hand-written BPTT.

Canonical layouts (docs/design.md): batch-first (N, T, F) input, w_ih (F, G*H),
w_hh (H, G*H), biases (G*H,), gate blocks LSTM i,f,g,o and GRU r,z,n with the
reset gate applied after the hidden matmul; zero initial state. Internally
the sequence is time-major so every per-step slice is contiguous. Only the
loop over time steps is in Python; all input-side matmuls and gradient
reductions are done once for the whole sequence. Arrays keep their dtype.
This module must not import any framework, nor `bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from impls.numpy.layers import sigmoid

Cache = dict[str, Any]
Grads = dict[str, np.ndarray]


def _input_projection(x: np.ndarray, w_ih: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(N, T, F) -> time-major (T, N, G*H) of x W_ih + bias, for every step at once."""
    return np.ascontiguousarray((x @ w_ih + bias).transpose(1, 0, 2))


def _finish_grads(c: Cache, d_ih: np.ndarray, d_hh: np.ndarray, need_dx: bool):
    """Parameter and input gradients from per-step pre-activation gradients.

    `d_ih` / `d_hh` are (T, N, G*H) gradients of the input-side and hidden-side
    pre-activations (identical except for the GRU candidate block).
    """
    x, hs = c["x"], c["hs"]
    gh = d_ih.shape[-1]
    x_tm = x.transpose(1, 0, 2).reshape(-1, x.shape[-1])
    h_prev = hs[:-1].reshape(-1, hs.shape[-1])
    grads = {
        "w_ih": x_tm.T @ d_ih.reshape(-1, gh),
        "w_hh": h_prev.T @ d_hh.reshape(-1, gh),
        "b_ih": d_ih.sum(axis=(0, 1)),
        "b_hh": d_hh.sum(axis=(0, 1)),
    }
    dx = (d_ih @ c["w_ih"].T).transpose(1, 0, 2) if need_dx else None
    return dx, grads


# ------------------------------------------------------------------ vanilla RNN
def _rnn_forward(x, w_ih, w_hh, b_ih, b_hh, activation: str = "tanh") -> Cache:
    xw = _input_projection(x, w_ih, b_ih + b_hh)
    t_len, n, h = xw.shape
    hs = np.zeros((t_len + 1, n, h), dtype=xw.dtype)
    buf = np.empty((n, h), dtype=xw.dtype)
    relu = activation == "relu"
    for t in range(t_len):
        np.matmul(hs[t], w_hh, out=buf)
        buf += xw[t]
        if relu:
            np.maximum(buf, 0.0, out=hs[t + 1])
        else:
            np.tanh(buf, out=hs[t + 1])
    return {"x": x, "w_ih": w_ih, "w_hh": w_hh, "hs": hs, "activation": activation}


def _rnn_backward(c: Cache, dhs: np.ndarray, need_dx: bool, record: np.ndarray | None = None):
    hs, w_hh_t = c["hs"], c["w_hh"].T
    if c["activation"] == "relu":  # ReLU' = 1 where the pre-activation > 0, i.e. h > 0
        dtanh = (hs[1:] > 0).astype(hs.dtype)
    else:
        dtanh = 1.0 - hs[1:] * hs[1:]
    da = np.empty_like(dtanh)
    dh = np.zeros_like(hs[0])
    for t in reversed(range(len(da))):
        dh += dhs[t]
        if record is not None:  # dL/dh_t, every path included (hidden_state_grads)
            record[t] = dh
        np.multiply(dh, dtanh[t], out=da[t])
        dh = da[t] @ w_hh_t
    return _finish_grads(c, da, da, need_dx)


# ------------------------------------------------------------------------ LSTM
def _lstm_forward(x, w_ih, w_hh, b_ih, b_hh) -> Cache:
    xw = _input_projection(x, w_ih, b_ih + b_hh)
    t_len, n, gh = xw.shape
    h = gh // 4
    hs = np.zeros((t_len + 1, n, h), dtype=xw.dtype)
    cs = np.zeros((t_len + 1, n, h), dtype=xw.dtype)
    tcs = np.empty((t_len, n, h), dtype=xw.dtype)
    acts = np.empty((t_len, n, gh), dtype=xw.dtype)  # i, f, tanh(g), o after activation
    for t in range(t_len):
        a = hs[t] @ w_hh
        a += xw[t]
        act = acts[t]
        act[:] = sigmoid(a)
        np.tanh(a[:, 2 * h : 3 * h], out=act[:, 2 * h : 3 * h])
        i, f, g, o = act[:, :h], act[:, h : 2 * h], act[:, 2 * h : 3 * h], act[:, 3 * h :]
        np.multiply(f, cs[t], out=cs[t + 1])
        cs[t + 1] += i * g
        np.tanh(cs[t + 1], out=tcs[t])
        np.multiply(o, tcs[t], out=hs[t + 1])
    return {"x": x, "w_ih": w_ih, "w_hh": w_hh, "hs": hs, "cs": cs, "tcs": tcs, "acts": acts}


def _lstm_backward(c: Cache, dhs: np.ndarray, need_dx: bool, record: np.ndarray | None = None,
                   record_c: np.ndarray | None = None):
    acts, cs, tcs, w_hh_t = c["acts"], c["cs"], c["tcs"], c["w_hh"].T
    h = tcs.shape[-1]
    # Derivative of each gate's activation w.r.t. its pre-activation, all steps at once.
    dact = acts * (1.0 - acts)
    g_all = acts[:, :, 2 * h : 3 * h]
    dact[:, :, 2 * h : 3 * h] = 1.0 - g_all * g_all
    dtc = 1.0 - tcs * tcs
    da = np.empty_like(acts)
    dh = np.zeros_like(tcs[0])
    dc = np.zeros_like(tcs[0])
    for t in reversed(range(len(acts))):
        dh += dhs[t]
        if record is not None:  # dL/dh_t, every path included (hidden_state_grads)
            record[t] = dh
        act, d = acts[t], da[t]
        dc += dh * act[:, 3 * h :] * dtc[t]
        if record_c is not None:  # dL/dc_t, every path included
            record_c[t] = dc
        np.multiply(dc, act[:, 2 * h : 3 * h], out=d[:, :h])  # d i
        np.multiply(dc, cs[t], out=d[:, h : 2 * h])  # d f
        np.multiply(dc, act[:, :h], out=d[:, 2 * h : 3 * h])  # d g
        np.multiply(dh, tcs[t], out=d[:, 3 * h :])  # d o
        d *= dact[t]
        dc *= act[:, h : 2 * h]
        dh = d @ w_hh_t
    return _finish_grads(c, da, da, need_dx)


# ------------------------------------------------------------------------- GRU
def _gru_forward(x, w_ih, w_hh, b_ih, b_hh) -> Cache:
    gx = _input_projection(x, w_ih, b_ih)
    t_len, n, gh = gx.shape
    h = gh // 3
    hs = np.zeros((t_len + 1, n, h), dtype=gx.dtype)
    rz = np.empty((t_len, n, 2 * h), dtype=gx.dtype)
    ns = np.empty((t_len, n, h), dtype=gx.dtype)
    ghn = np.empty((t_len, n, h), dtype=gx.dtype)  # h W_hn + b_hn, needed for d r
    for t in range(t_len):
        g = hs[t] @ w_hh
        g += b_hh
        ghn[t] = g[:, 2 * h :]
        g[:, : 2 * h] += gx[t, :, : 2 * h]
        rz[t] = sigmoid(g[:, : 2 * h])
        r, z = rz[t, :, :h], rz[t, :, h:]
        np.tanh(gx[t, :, 2 * h :] + r * ghn[t], out=ns[t])
        # h' = (1 - z) * n + z * h, rearranged to save a temporary.
        np.subtract(hs[t], ns[t], out=hs[t + 1])
        hs[t + 1] *= z
        hs[t + 1] += ns[t]
    return {"x": x, "w_ih": w_ih, "w_hh": w_hh, "hs": hs, "rz": rz, "ns": ns, "ghn": ghn}


def _gru_backward(c: Cache, dhs: np.ndarray, need_dx: bool, record: np.ndarray | None = None):
    hs, rz, ns, ghn, w_hh_t = c["hs"], c["rz"], c["ns"], c["ghn"], c["w_hh"].T
    h = ns.shape[-1]
    drz = rz * (1.0 - rz)
    dtanh = 1.0 - ns * ns
    d_ih = np.empty((len(ns), ns.shape[1], 3 * h), dtype=ns.dtype)
    d_hh = np.empty_like(d_ih)
    dh = np.zeros_like(hs[0])
    for t in reversed(range(len(ns))):
        dh += dhs[t]
        if record is not None:  # dL/dh_t, every path included (hidden_state_grads)
            record[t] = dh
        r, z = rz[t, :, :h], rz[t, :, h:]
        di, dg = d_ih[t], d_hh[t]
        dan = di[:, 2 * h :]
        np.multiply(dh, 1.0 - z, out=dan)
        dan *= dtanh[t]
        np.multiply(dan, ghn[t], out=di[:, :h])  # d r
        np.multiply(dh, hs[t] - ns[t], out=di[:, h : 2 * h])  # d z
        di[:, : 2 * h] *= drz[t]
        dg[:, : 2 * h] = di[:, : 2 * h]
        np.multiply(dan, r, out=dg[:, 2 * h :])
        dh = dh * z + dg @ w_hh_t
    return _finish_grads(c, d_ih, d_hh, need_dx)


_CELLS: dict[str, tuple[Callable, Callable]] = {
    "rnn": (_rnn_forward, _rnn_backward),
    "lstm": (_lstm_forward, _lstm_backward),
    "gru": (_gru_forward, _gru_backward),
}


def recurrent_forward(
    x: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray,
    b_hh: np.ndarray,
    cell: str,
    return_sequences: bool,
    activation: str = "tanh",
) -> tuple[np.ndarray, Cache]:
    """Run `cell` over (N, T, F); returns (N, T, H) or the last state (N, H).
    `activation` is the vanilla cell's ("tanh" or "relu"); LSTM/GRU ignore it."""
    if cell == "rnn":
        cache = _rnn_forward(x, w_ih, w_hh, b_ih, b_hh, activation)
    else:
        cache = _CELLS[cell][0](x, w_ih, w_hh, b_ih, b_hh)
    cache["cell"], cache["return_sequences"] = cell, return_sequences
    hs = cache["hs"]
    out = hs[1:].transpose(1, 0, 2) if return_sequences else hs[-1]
    return out, cache


def recurrent_backward(
    dout: np.ndarray, cache: Cache, need_dx: bool
) -> tuple[np.ndarray | None, Grads]:
    """BPTT: gradients of w_ih, w_hh, b_ih, b_hh (and x when `need_dx`)."""
    hs = cache["hs"]
    if cache["return_sequences"]:
        dhs = dout.transpose(1, 0, 2)
    else:
        dhs = np.zeros_like(hs[1:])
        dhs[-1] = dout
    return _CELLS[cache["cell"]][1](cache, dhs, need_dx)


def recurrent_backward_states(
    dout: np.ndarray, cache: Cache, need_dx: bool
) -> tuple[np.ndarray | None, Grads, np.ndarray]:
    """As `recurrent_backward`, plus dL/ds_t of every step's state as (N, T, S).

    The state s_t is h_t (S = H), and for an LSTM (h_t, c_t) (S = 2H: dL/dh_t,
    then dL/dc_t).
    The total gradient of each hidden state (through the output and through
    every later step), which BPTT holds anyway: what a zero probe added to
    h_t would receive in an autodiff backend.
    """
    hs = cache["hs"]
    if cache["return_sequences"]:
        dhs = dout.transpose(1, 0, 2)
    else:
        dhs = np.zeros_like(hs[1:])
        dhs[-1] = dout
    record = np.empty_like(hs[1:])
    if cache["cell"] == "lstm":
        record_c = np.empty_like(record)
        dx, grads = _lstm_backward(cache, dhs, need_dx, record, record_c)
        record = np.concatenate([record, record_c], axis=-1)
    else:
        dx, grads = _CELLS[cache["cell"]][1](cache, dhs, need_dx, record)
    return dx, grads, np.ascontiguousarray(record.transpose(1, 0, 2))


def _cell_step(cell: str, xw: np.ndarray, h: np.ndarray, c: np.ndarray, w_hh: np.ndarray,
               b_hh: np.ndarray, probe_c: np.ndarray,
               activation: str = "tanh") -> tuple[np.ndarray, np.ndarray]:
    """One step of `cell` written plainly: `xw` = x_t W_ih + b_ih; returns (h, c).
    An LSTM adds `probe_c` to its new cell state before h reads it."""
    hw = h @ w_hh + b_hh
    if cell == "rnn":
        return (np.maximum(xw + hw, 0.0) if activation == "relu" else np.tanh(xw + hw)), c
    if cell == "lstm":
        i, f, g, o = np.split(xw + hw, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g) + probe_c
        return sigmoid(o) * np.tanh(c), c
    x_r, x_z, x_n = np.split(xw, 3, axis=-1)
    h_r, h_z, h_n = np.split(hw, 3, axis=-1)
    r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
    n = np.tanh(x_n + r * h_n)
    return (1.0 - z) * n + z * h, c


def recurrent_forward_probed(
    x: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray,
    b_hh: np.ndarray,
    cell: str,
    return_sequences: bool,
    probe: np.ndarray,
    activation: str = "tanh",
) -> np.ndarray:
    """The forward of `recurrent_forward` with `probe[:, t]` added to each state s_t
    (N, T, S): h_t, and for an LSTM (h_t, c_t), S = 2H.

    Forward only, step by step: the function whose derivative in `probe` (at
    zero) `recurrent_backward_states` returns, so finite differences can check
    it. Not used for training or timing.
    """
    xw = x @ w_ih + b_ih
    h = np.zeros((x.shape[0], w_hh.shape[0]), dtype=xw.dtype)
    c = h
    states = []
    for t in range(x.shape[1]):
        hid = h.shape[-1]
        h, c = _cell_step(cell, xw[:, t], h, c, w_hh, b_hh, probe[:, t, hid:], activation)
        h = h + probe[:, t, :hid]
        states.append(h)
    return np.stack(states, axis=1) if return_sequences else h
