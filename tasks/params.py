"""Canonical parameters, created once in NumPy from a seed.

Every backend receives exactly these float64 arrays (cast to its dtype) in the
layouts of docs/design.md §2. Nothing here knows about any framework.
"""

from __future__ import annotations

import numpy as np

from tasks.spec import Conv2D, Dense, ModelSpec, Recurrent


def init_params(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Seeded initial parameters in canonical layout and order (float64).

    Dense and Conv2D weights are Glorot-uniform; recurrent weights are
    U(-1/sqrt(H), 1/sqrt(H)) as in PyTorch. Biases are small random values
    rather than zeros, so a backend that drops or misplaces one fails the
    gradient check instead of passing by accident. The LSTM forget gate gets
    +1 on b_ih, the usual trick that lets it remember from the first step.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for layer, in_shape in zip(spec.layers, spec.shapes(), strict=False):
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
            if layer.cell == "lstm":
                params[f"{n}.b_ih"][h : 2 * h] += 1.0  # forget-gate block (i, f, g, o)
    expected = spec.param_shapes()
    assert {k: v.shape for k, v in params.items()} == expected, "init out of step with spec"
    return params
