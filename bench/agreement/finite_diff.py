"""Central finite differences in float64: the check on the NumPy reference itself.

`numerical_grads` differentiates any scalar function of a dict of arrays;
`check_model` compares the hand-written gradients of `impls.numpy.model`
with it, by normwise relative error. Large tensors are checked on a seeded
random subset of entries so a whole-model check stays well under a second.
This module must not import any framework (NumPy only) and must not be used
on float32 arrays: differences at eps=1e-6 need float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.agreement.metrics import normwise
from tasks.spec import ModelSpec

Arrays = dict[str, np.ndarray]
INPUT = "input"  # key under which `check_model` reports the gradient w.r.t. x


def sample_indices(size: int, max_entries: int | None, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check: all of them, or a sorted random subset."""
    if max_entries is None or size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, max_entries, replace=False))


def numerical_grads(
    f: Callable[[Arrays], float],
    arrays: Arrays,
    eps: float = 1e-6,
    max_entries: int | None = 64,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(f(p + eps) - f(p - eps)) / (2 eps) per checked entry.

    Returns name -> (flat indices, gradient values at those indices). `arrays`
    are perturbed in float64 copies; the caller's arrays are left untouched.
    """
    rng = np.random.default_rng(seed)
    work = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
    result = {}
    for name, arr in work.items():
        flat = arr.reshape(-1)  # a view: perturbing it perturbs what f sees
        idx = sample_indices(flat.size, max_entries, rng)
        vals = np.empty(len(idx))
        for j, i in enumerate(idx):
            orig = flat[i]
            flat[i] = orig + eps
            up = float(f(work))
            flat[i] = orig - eps
            down = float(f(work))
            flat[i] = orig
            vals[j] = (up - down) / (2.0 * eps)
        result[name] = (idx, vals)
    return result


def compare(
    analytic: Arrays, numerical: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    """Normwise relative error of each analytic gradient over the checked entries."""
    return {
        name: normwise(analytic[name].reshape(-1)[idx], vals)
        for name, (idx, vals) in numerical.items()
    }


def cancellation(loss: float, numerical: dict[str, tuple[np.ndarray, np.ndarray]],
                 eps: float) -> dict[str, float]:
    """The normwise relative error that rounding alone puts into each tensor's
    central differences (see `bench.agreement.tolerances.finite_difference_tolerance`).

    Each loss value carries a rounding error of about u|L| (u = 2**-53), and the
    difference of two of them divided by 2 eps one of about u|L| / eps; over m
    entries that is sqrt(m) u|L| / eps in norm, relative to the norm of the
    differences themselves (not of the gradient under test, so a wrong gradient
    cannot loosen its own check).
    """
    unit = float(np.finfo(np.float64).eps) / 2
    out = {}
    for name, (_, vals) in numerical.items():
        scale = float(np.linalg.norm(vals))
        noise = np.sqrt(len(vals)) * unit * abs(loss) / eps
        out[name] = float(noise / scale) if scale > 0 else float("inf")
    return out


def check_model_detailed(
    spec: ModelSpec,
    params: Arrays,
    x: np.ndarray,
    y: np.ndarray,
    eps: float = 1e-6,
    max_entries: int | None = 64,
    seed: int = 0,
    wrt_input: bool = False,
) -> dict[str, tuple[float, float]]:
    """Per tensor, (normwise relative error of the NumPy reference's gradient against
    central differences, that error's expected size from cancellation alone).

    With `wrt_input` the gradient w.r.t. `x` is checked too, reported under
    `INPUT`. Everything is evaluated in float64 whatever dtype is passed in.
    """
    from impls.numpy import model  # bench may import impls, never the reverse

    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x64 = np.asarray(x, np.float64)
    loss, grads, dx = model.loss_grads_and_dx(spec, p64, x64, y)
    analytic = dict(grads)
    arrays = dict(p64)
    if wrt_input:
        analytic[INPUT] = dx
        arrays[INPUT] = x64

    def f(a: Arrays) -> float:
        ps = {k: v for k, v in a.items() if k != INPUT}
        return float(model.loss(spec, ps, a.get(INPUT, x64), y))

    numerical = numerical_grads(f, arrays, eps, max_entries, seed)
    errors, noise = compare(analytic, numerical), cancellation(float(loss), numerical, eps)
    return {name: (errors[name], noise[name]) for name in errors}


def check_model(spec: ModelSpec, params: Arrays, x: np.ndarray, y: np.ndarray,
                **options: Any) -> dict[str, float]:
    """Normwise relative error of the NumPy reference's gradients, per parameter
    (`check_model_detailed`, with its options, without the cancellation estimate)."""
    found = check_model_detailed(spec, params, x, y, **options)
    return {name: err for name, (err, _) in found.items()}
