"""Recurrent layers in JAX: RNN, LSTM and GRU as `lax.scan` over time.

Canonical layouts (docs/design.md): batch-first (N, T, F) input, w_ih (F, G*H),
w_hh (H, G*H), gate blocks LSTM i,f,g,o and GRU r,z,n with the reset gate
applied after the hidden matmul; zero initial state. The input projection
runs inside each step (x_t @ w_ih + bias), as in Flax's cells and the
TensorFlow backend's loop: the same FLOPs as one matmul before the scan, but
XLA:CPU fuses the per-step slice of a precomputed (T, N, G*H) projection into
the gate math's loop fusion, which then runs 2-3x slower (standard LSTM/GRU
forward, docs/design.md §5); a slice of the (T, N, F) input feeds a dot and
stays a separate copy. `unroll` is passed to `lax.scan` (1 = a rolled loop).
Pure functions under `jax.jit`; they keep the input dtype and must not import
`bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Carry = Array | tuple[Array, Array]
Step = Callable[[Carry, Array], tuple[Carry, Array]]


def _rnn_step(w_hh: Array, b_hh: Array) -> Step:
    del b_hh  # folded into the input projection

    def step(h: Array, xt: Array) -> tuple[Array, Array]:
        h = jnp.tanh(xt + h @ w_hh)
        return h, h

    return step


def _rnn_relu_step(w_hh: Array, b_hh: Array) -> Step:
    del b_hh  # folded into the input projection

    def step(h: Array, xt: Array) -> tuple[Array, Array]:
        h = jax.nn.relu(xt + h @ w_hh)
        return h, h

    return step


def _lstm_step(w_hh: Array, b_hh: Array) -> Step:
    del b_hh  # folded into the input projection

    def step(carry: tuple[Array, Array], xt: Array) -> tuple[tuple[Array, Array], Array]:
        h, c = carry
        i, f, g, o = jnp.split(xt + h @ w_hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    return step


def _gru_step(w_hh: Array, b_hh: Array) -> Step:
    def step(h: Array, xt: Array) -> tuple[Array, Array]:
        x_r, x_z, x_n = jnp.split(xt, 3, axis=-1)
        # b_hh stays inside: the reset gate multiplies (h W_hn + b_hn) as a whole.
        h_r, h_z, h_n = jnp.split(h @ w_hh + b_hh, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        return h, h

    return step


_STEPS: dict[str, Callable[[Array, Array], Step]] = {
    "rnn": _rnn_step,
    "lstm": _lstm_step,
    "gru": _gru_step,
}


def _projecting(cell: str, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array,
                activation: str = "tanh") -> Step:
    """The cell's step on the raw input x_t: its projection x_t @ w_ih + bias first.
    GRU keeps b_hh for the per-step hidden term; RNN and LSTM add it here.
    `activation` is the vanilla cell's ("tanh" or "relu")."""
    bias = b_ih if cell == "gru" else b_ih + b_hh
    make = _rnn_relu_step if cell == "rnn" and activation == "relu" else _STEPS[cell]
    step = make(w_hh, b_hh)

    def projected(carry: Carry, xt: Array) -> tuple[Carry, Array]:
        return step(carry, xt @ w_ih + bias)

    return projected


def recurrent(
    x: Array,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array,
    b_hh: Array,
    cell: str,
    return_sequences: bool,
    unroll: int = 1,
    activation: str = "tanh",
) -> Array:
    """(N, T, F) -> (N, H) last state, or (N, T, H) every state."""
    xs = jnp.swapaxes(x, 0, 1)  # time-major (T, N, F)
    h0 = jnp.zeros((x.shape[0], w_hh.shape[0]), dtype=x.dtype)
    carry0: Carry = (h0, h0) if cell == "lstm" else h0
    step = _projecting(cell, w_ih, w_hh, b_ih, b_hh, activation)
    if return_sequences:
        _, hs = lax.scan(step, carry0, xs, unroll=unroll)
        return jnp.swapaxes(hs, 0, 1)

    def last_only(carry: Carry, xt: Array) -> tuple[Carry, None]:
        return step(carry, xt)[0], None  # no per-step output to stack

    carry, _ = lax.scan(last_only, carry0, xs, unroll=unroll)
    return carry[0] if cell == "lstm" else carry


def recurrent_probed(
    x: Array,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array,
    b_hh: Array,
    cell: str,
    return_sequences: bool,
    probe: Array,
    unroll: int = 1,
    activation: str = "tanh",
) -> Array:
    """`recurrent` with `probe[:, t]` (N, T, S) added to each state: h_t (S = H), and
    for an LSTM (h_t, c_t) (S = 2H).

    With a zero probe the output is `recurrent`'s; the gradient with respect
    to the probe is dL/ds_t through every path (`Program.hidden_state_grads`).
    """
    bias = b_ih if cell == "gru" else b_ih + b_hh
    xs = jnp.swapaxes(x, 0, 1)  # the projection runs per step, as in `recurrent`
    h0 = jnp.zeros((x.shape[0], w_hh.shape[0]), dtype=x.dtype)
    carry0: Carry = (h0, h0) if cell == "lstm" else h0
    step = _projecting(cell, w_ih, w_hh, b_ih, b_hh, activation)

    hid = w_hh.shape[0]

    def probed(carry: Carry, inputs: tuple[Array, Array]) -> tuple[Carry, Array]:
        xt, pt = inputs
        if cell == "lstm":  # the probe's second half goes on c_t, before h_t reads it
            xt = xt @ w_ih + bias  # projected per step, as `_projecting` does
            h, c = carry
            i, f, g, o = jnp.split(xt + h @ w_hh, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g) + pt[:, hid:]
            h = jax.nn.sigmoid(o) * jnp.tanh(c) + pt[:, :hid]
            return (h, c), h
        _, h = step(carry, xt)
        h = h + pt
        return h, h

    carry, hs = lax.scan(probed, carry0, (xs, jnp.swapaxes(probe, 0, 1)), unroll=unroll)
    if return_sequences:
        return jnp.swapaxes(hs, 0, 1)
    return carry[0] if cell == "lstm" else carry


# ------------------------------------------------------------ Flax cells ("flax" variant)
def flax_cell(cell: str, hidden: int, dtype=None, activation: str = "tanh"):
    """The Flax linen cell users pick for `cell`: SimpleCell, OptimizedLSTMCell, GRUCell
    (SimpleCell with `activation_fn` relu for a ReLU vanilla cell)."""
    import flax.linen as nn

    # parent=None: unbound, so the nn.RNN that gets it owns it (as its "cell")
    cls = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell]
    kw = {"activation_fn": nn.relu} if cell == "rnn" and activation == "relu" else {}
    # param_dtype also sets the zero carry's dtype (float32 by default)
    return cls(hidden, param_dtype=dtype or jnp.float32, parent=None, **kw)


def flax_cell_params(cell: str, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array) -> dict:
    """Canonical weights as the Flax cell's parameter tree (traced, so differentiable).

    Flax splits the gates into one Dense per gate and keeps a single bias where
    the two sides are summed: SimpleCell's input Dense and the LSTM's hidden
    Dense take b_ih + b_hh; the GRU's r and z input Dense take b_ir + b_hr
    (b_iz + b_hz), while its n gate keeps b_in and b_hn apart (the reset gate
    multiplies h W_hn + b_hn). The gradient through the sum is each canonical
    bias's gradient, so nothing needs converting back.
    """
    if cell == "rnn":
        return {"i": {"kernel": w_ih, "bias": b_ih + b_hh}, "h": {"kernel": w_hh}}
    if cell == "lstm":
        wi, wh, b = (jnp.split(a, 4, axis=-1) for a in (w_ih, w_hh, b_ih + b_hh))
        out = {}
        for k, gate in enumerate("ifgo"):
            out[f"i{gate}"] = {"kernel": wi[k]}
            out[f"h{gate}"] = {"kernel": wh[k], "bias": b[k]}
        return out
    wi, wh, bi, bh = (jnp.split(a, 3, axis=-1) for a in (w_ih, w_hh, b_ih, b_hh))
    return {
        "ir": {"kernel": wi[0], "bias": bi[0] + bh[0]},
        "iz": {"kernel": wi[1], "bias": bi[1] + bh[1]},
        "in": {"kernel": wi[2], "bias": bi[2]},
        "hr": {"kernel": wh[0]},
        "hz": {"kernel": wh[1]},
        "hn": {"kernel": wh[2], "bias": bh[2]},
    }
