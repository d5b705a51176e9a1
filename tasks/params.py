"""Canonical parameters, created once in NumPy from a seed.

Every backend receives exactly these float64 arrays (cast to its dtype) in the
layouts of docs/design.md §2. Nothing here knows about any framework.
"""

from __future__ import annotations

import numpy as np

from tasks.spec import Conv2D, Dense, ModelSpec, Recurrent

#: how the recurrent matrix W_hh starts (see `init_params`)
RECURRENT_INITS = ("uniform", "orthogonal", "identity")


def recurrent_matrix(init: str, hidden: int, gates: int, rng: np.random.Generator) -> np.ndarray:
    """W_hh (hidden, gates * hidden) with every gate's (hidden, hidden) block orthogonal
    (Q of the QR of a Gaussian matrix, signs fixed by R's diagonal; Saxe et al. 2014)
    or the identity (Le et al. 2015)."""
    blocks = []
    for _ in range(gates):
        if init == "identity":
            blocks.append(np.eye(hidden))
        else:
            q, r = np.linalg.qr(rng.standard_normal((hidden, hidden)))
            blocks.append(q * np.sign(np.diag(r)))
    return np.concatenate(blocks, axis=1)


def init_params(spec: ModelSpec, seed: int, recurrent_init: str = "uniform",
                forget_bias: float = 1.0) -> dict[str, np.ndarray]:
    """Seeded initial parameters in canonical layout and order (float64).

    Dense and Conv2D weights are Glorot-uniform; recurrent weights are
    U(-1/sqrt(H), 1/sqrt(H)) as in PyTorch. Biases are small random values
    rather than zeros, so a backend that drops or misplaces one fails the
    gradient check instead of passing by accident. The LSTM forget gate gets
    +1 on b_ih, the usual trick that lets it remember from the first step
    (`forget_bias` sets it; 0 is the plain initialisation).

    `recurrent_init` other than "uniform" replaces W_hh after the same draws
    (so every other parameter is unchanged): "orthogonal" draws each gate's
    block from a second generator seeded by (seed, layer index); "identity"
    sets each block to I and zeroes the recurrent layer's biases, as the IRNN
    of Le et al. 2015 (whose ReLU is the spec's `Recurrent.activation`).
    """
    if recurrent_init not in RECURRENT_INITS:
        from tasks.base import TaskError

        raise TaskError(f"recurrent_init must be one of {', '.join(RECURRENT_INITS)}, "
                        f"got {recurrent_init!r}")
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for index, (layer, in_shape) in enumerate(zip(spec.layers, spec.shapes(), strict=False)):
        n = layer.name
        if isinstance(layer, Dense):
            fan_in, fan_out = in_shape[0], layer.units
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            params[f"{n}.weight"] = rng.uniform(-limit, limit, (fan_in, fan_out))
            params[f"{n}.bias"] = rng.uniform(-0.1, 0.1, fan_out)
        elif isinstance(layer, Conv2D):
            k, c_in = layer.kernel, in_shape[0]
            fan_in, fan_out = c_in * k * k, layer.filters * k * k
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            params[f"{n}.weight"] = rng.uniform(-limit, limit, (layer.filters, c_in, k, k))
            params[f"{n}.bias"] = rng.uniform(-0.1, 0.1, layer.filters)
        elif isinstance(layer, Recurrent):
            h, gh, f = layer.hidden, layer.gates * layer.hidden, in_shape[1]
            bound = 1.0 / np.sqrt(h)
            params[f"{n}.w_ih"] = rng.uniform(-bound, bound, (f, gh))
            params[f"{n}.w_hh"] = rng.uniform(-bound, bound, (h, gh))
            params[f"{n}.b_ih"] = rng.uniform(-bound, bound, gh)
            params[f"{n}.b_hh"] = rng.uniform(-bound, bound, gh)
            if recurrent_init != "uniform":
                params[f"{n}.w_hh"] = recurrent_matrix(
                    recurrent_init, h, layer.gates, np.random.default_rng([seed, index]))
            if recurrent_init == "identity":
                params[f"{n}.b_ih"][:] = 0.0
                params[f"{n}.b_hh"][:] = 0.0
            if layer.cell == "lstm":
                params[f"{n}.b_ih"][h : 2 * h] += forget_bias  # forget-gate block (i, f, g, o)
    expected = spec.param_shapes()
    assert {k: v.shape for k, v in params.items()} == expected, "init out of step with spec"
    return params
