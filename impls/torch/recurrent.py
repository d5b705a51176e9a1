"""Recurrent layers of the torch backend: explicit cell math, and torch's fused modules.

`recurrent` runs RNN, LSTM or GRU as a Python loop over time with the cell
written out in primitive ops (the "eager" and "compile" variants).
`FusedRecurrent` wraps `nn.RNN` / `nn.LSTM` / `nn.GRU` (cuDNN on GPU) for the
"native" variant. Both use torch's weight layout, w_ih (G*H, F) and w_hh
(G*H, H), with the canonical gate order (torch already uses LSTM i,f,g,o and
GRU r,z,n with the reset gate after the hidden matmul), so one layout
conversion serves both. Input is batch-first (N, T, F), the initial state
zero. This module must not import `bench`.

Same work per step in every backend's hand-written cells: the input
projection of all steps is one matmul before the loop; RNN and LSTM add
b_ih + b_hh there once (`FOLDED_BIAS`), GRU adds b_ih there and b_hh at every
step (its reset gate multiplies h W_hn + b_hn). The fused modules differ:
cuDNN and torch's CPU kernels add both biases inside every step (and compute
the input matmul per step on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasks.spec import Recurrent

Tensor = torch.Tensor
Step = tuple[Tensor, Tensor]  # (h, c); c is the LSTM cell state, passed through by the others


def _rnn_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor, c: Tensor) -> Step:
    del b_hh  # folded into the input projection (FOLDED_BIAS)
    return torch.tanh(gx + F.linear(h, w_hh)), c


def _rnn_relu_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor, c: Tensor) -> Step:
    del b_hh  # folded into the input projection (FOLDED_BIAS)
    return torch.relu(gx + F.linear(h, w_hh)), c


def _lstm_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor, c: Tensor) -> Step:
    del b_hh  # folded into the input projection (FOLDED_BIAS)
    i, f, g, o = (gx + F.linear(h, w_hh)).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor, c: Tensor) -> Step:
    xr, xz, xn = gx.chunk(3, dim=-1)
    # b_hh stays inside: the reset gate multiplies (h W_hn + b_hn) as a whole
    hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h, c


_STEPS = {"rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}


def _step(cell: str, activation: str):
    """The step function of `cell`; the vanilla cell's with its `activation`."""
    return _rnn_relu_step if cell == "rnn" and activation == "relu" else _STEPS[cell]

#: cells whose b_hh is added once, with b_ih, in the input projection rather
#: than at every step: the same in all four backends' hand-written cells
FOLDED_BIAS = ("rnn", "lstm")


def recurrent(
    x: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
    cell: str,
    return_sequences: bool,
    activation: str = "tanh",
) -> torch.Tensor:
    """(N, T, F) -> (N, H) last state, or (N, T, H) with `return_sequences`;
    `activation` is the vanilla cell's ("tanh" or "relu")."""
    step = _step(cell, activation)
    # the input-side matmul does not depend on the state: one matmul for all steps
    gx = F.linear(x, w_ih, b_ih + b_hh if cell in FOLDED_BIAS else b_ih)
    h = x.new_zeros(x.shape[0], w_hh.shape[1])  # w_hh is (G*H, H)
    c = h  # LSTM cell state; the other cells carry it through untouched
    states = []
    # unbind, not gx[:, t]: autograd's backward of a slice writes the step's gradient
    # into a zero tensor the size of all of gx, so T slices cost O(T^2) memory traffic
    # in the backward; unbind's backward stacks the T step gradients once
    for gx_t in gx.unbind(1):
        h, c = step(gx_t, h, w_hh, b_hh, c)
        states.append(h)
    return torch.stack(states, dim=1) if return_sequences else h


_MODULES = {
    "rnn": lambda f, h, activation="tanh", **kw: nn.RNN(f, h, nonlinearity=activation, **kw),
    "lstm": nn.LSTM,
    "gru": nn.GRU,
}
# torch's parameter names, in canonical order w_ih, w_hh, b_ih, b_hh
MODULE_PARAMS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


class FusedRecurrent:
    """One fused torch recurrent module whose parameters the program owns.

    The module's own Parameters are the program's tensors for this layer (not
    copies), so in-place optimiser updates keep cuDNN's single flat weight
    buffer and autograd differentiates with respect to them directly.
    """

    def __init__(
        self,
        layer: Recurrent,
        in_shape: tuple[int, ...],
        weights: list[torch.Tensor],
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        """`weights`: w_ih, w_hh, b_ih, b_hh in torch layout; `in_shape`: (T, F)."""
        self.layer = layer
        kw = {"activation": layer.activation} if layer.cell == "rnn" else {}
        self.module = _MODULES[layer.cell](
            in_shape[-1], layer.hidden, batch_first=True, dtype=dtype, device=device, **kw
        )
        with torch.no_grad():
            for name, value in zip(MODULE_PARAMS, weights, strict=True):
                getattr(self.module, name).copy_(value)
        if device.type == "cuda":
            self.module.flatten_parameters()

    def parameters(self) -> list[torch.Tensor]:
        return [getattr(self.module, name) for name in MODULE_PARAMS]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.module(x)
        return out if self.layer.return_sequences else out[:, -1]


def recurrent_probed(
    x: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
    cell: str,
    return_sequences: bool,
    probe: torch.Tensor,
    activation: str = "tanh",
) -> torch.Tensor:
    """`recurrent` with `probe[:, t]` (N, T, S) added to each state: h_t (S = H), and
    for an LSTM (h_t, c_t) (S = 2H).

    With a zero probe the output is `recurrent`'s; the gradient of the loss
    with respect to the probe is dL/ds_t through every path (the output and
    every later step), which `Program.hidden_state_grads` returns.
    """
    step = _step(cell, activation)
    # the same projection as `recurrent`: b_hh folded in for the cells in FOLDED_BIAS
    gx = F.linear(x, w_ih, b_ih + b_hh if cell in FOLDED_BIAS else b_ih)
    h = x.new_zeros(x.shape[0], w_hh.shape[1])
    c = h
    states = []
    hid = h.shape[-1]
    # unbind for the same reason as in `recurrent`
    for gx_t, probe_t in zip(gx.unbind(1), probe.unbind(1), strict=True):
        if cell == "lstm":  # the probe's second half goes on c_t, before h_t reads it
            i, f, g, o = (gx_t + F.linear(h, w_hh)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g) + probe_t[:, hid:]
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            h, c = step(gx_t, h, w_hh, b_hh, c)
        h = h + probe_t[:, :hid]
        states.append(h)
    return torch.stack(states, dim=1) if return_sequences else h
