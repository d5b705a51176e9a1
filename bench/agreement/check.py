"""Gradient and trajectory agreement against the float64 NumPy reference.

For one (task, knobs, backend, variant, dtype, device) this builds the model
from the same canonical parameters and batch as the reference, and compares
the loss, the forward output and every gradient tensor in canonical layout by
normwise relative error and elementwise allclose, with tolerances from
`bench.agreement.tolerances`. It also runs the reference's own finite-difference check.
It times nothing and writes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import impls
from bench.agreement.tolerances import tolerance
from tasks import get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params

TRAJECTORY_STEPS = 20


@dataclass(frozen=True)
class Row:
    """One compared tensor (or the loss) of one configuration."""

    check: str  # gradient | trajectory | finite_difference
    task: str
    knobs: str  # the overridden knobs, "cell=gru" style, "" for none
    backend: str
    variant: str
    dtype: str
    device: str
    tensor: str  # "loss", "output", a canonical parameter name, ...
    rel_err: float
    tolerance: float
    allclose: bool
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def knobs_label(overrides: dict[str, Any] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((overrides or {}).items()))


def normwise(value: np.ndarray, ref: np.ndarray) -> float:
    """||value - ref|| / ||ref||, with an absolute fallback when ref is all zeros."""
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    if value.shape != ref.shape:
        return float("inf")
    diff = float(np.linalg.norm((value - ref).ravel()))
    scale = float(np.linalg.norm(ref.ravel()))
    return diff / scale if scale > 0 else diff


def _row(check, base: dict, name: str, value, ref, dtype: str, device: str) -> Row:
    tol = tolerance(check, dtype, device)
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    err = normwise(value, ref)
    close = value.shape == ref.shape and bool(
        np.allclose(value, ref, rtol=tol.rtol, atol=tol.atol_scale * float(np.max(np.abs(ref))))
    )
    ok = bool(np.isfinite(err)) and err <= tol.normwise and close
    return Row(check, **base, tensor=name, rel_err=err, tolerance=tol.normwise,
               allclose=close, passed=ok)


@functools.lru_cache(maxsize=32)
def _setup(task_name: str, preset: str, knobs: tuple):
    task = get_task(task_name)
    cfg = task.config(preset, dict(knobs))
    spec = task.model(cfg)
    params = init_params(spec, cfg.seed)
    data = task.data(cfg)
    return cfg, spec, params, data


@functools.lru_cache(maxsize=32)
def _reference(task_name: str, preset: str, knobs: tuple):
    """Float64 NumPy loss, output and gradients on the first training batch."""
    cfg, spec, params, data = _setup(task_name, preset, knobs)
    x, y = data.batch(0, cfg.batch_size)
    program = impls.load("numpy").build(
        spec, params, variant="reference", dtype="float64", device="cpu",
        optimizer=OptimizerSpec(cfg.optimizer, cfg.lr),
    )
    loss, grads = program.loss_and_grads(x, y)
    return float(loss), program.forward(x), program.grads_to_canonical(grads)


def gradient_rows(task_name: str, preset: str, overrides: dict | None, backend: str,
                  variant: str, dtype: str, device: str, precision: str = "fp32") -> list[Row]:
    """Loss, output and every gradient of one configuration against the reference
    (in a reduced `precision` mode the rows carry its error; their pass/fail
    is against the strict tolerance and means nothing: see `bench.agreement.precision`)."""
    knobs = tuple(sorted((overrides or {}).items()))
    cfg, spec, params, data = _setup(task_name, preset, knobs)
    ref_loss, ref_out, ref_grads = _reference(task_name, preset, knobs)
    x, y = data.batch(0, cfg.batch_size)
    program = impls.load(backend).build(
        spec, params, variant=variant, dtype=dtype, device=device,
        optimizer=OptimizerSpec(cfg.optimizer, cfg.lr), precision=precision,
    )
    xd, yd = program.put(x), program.put(y)
    loss, grads = program.loss_and_grads(xd, yd)
    out = program.to_numpy(program.forward(xd))
    canonical = program.grads_to_canonical(grads)
    base = dict(task=task_name, knobs=knobs_label(overrides), backend=backend,
                variant=variant, dtype=dtype, device=device)
    rows = [
        _row("gradient", base, "loss", program.to_numpy(loss).reshape(()), ref_loss, dtype, device),
        _row("gradient", base, "output", out, ref_out, dtype, device),
    ]
    for name, ref in ref_grads.items():
        got = canonical.get(name, np.full_like(ref, np.nan))
        rows.append(_row("gradient", base, name, got, ref, dtype, device))
    return rows


def trajectory_rows(task_name: str, preset: str, overrides: dict | None, backend: str,
                    variant: str, dtype: str, device: str, optimizer: str,
                    steps: int = TRAJECTORY_STEPS, precision: str = "fp32") -> list[Row]:
    """`steps` optimiser steps on the same batches: loss sequence and final parameters."""
    knobs = tuple(sorted((overrides or {}).items()))
    cfg, spec, params, data = _setup(task_name, preset, knobs)
    opt = OptimizerSpec(optimizer, cfg.lr)
    batches = [data.batch(i, cfg.batch_size) for i in range(steps)]

    def run(name: str, var: str, dt: str, dev: str, prec: str = "fp32"):
        program = impls.load(name).build(spec, params, variant=var, dtype=dt, device=dev,
                                         optimizer=opt, precision=prec)
        losses = []
        for x, y in batches:
            losses.append(program.to_numpy(program.step(program.put(x), program.put(y))))
        return np.array(losses, np.float64).reshape(-1), program.params()

    ref_losses, ref_params = run("numpy", "reference", "float64", "cpu")
    losses, final = run(backend, variant, dtype, device, precision)
    base = dict(task=task_name, knobs=knobs_label(overrides), backend=backend,
                variant=f"{variant}/{optimizer}", dtype=dtype, device=device)
    rows = [_row("trajectory", base, f"loss[{steps} steps]", losses, ref_losses, dtype, device)]
    for name, ref in ref_params.items():
        rows.append(_row("trajectory", base, name, final[name], ref, dtype, device))
    return rows


def finite_difference_rows(task_name: str, preset: str, overrides: dict | None) -> list[Row]:
    """The NumPy reference's analytic gradients against central differences (float64)."""
    from bench.agreement.finite_diff import check_model

    knobs = tuple(sorted((overrides or {}).items()))
    cfg, spec, params, data = _setup(task_name, preset, knobs)
    x, y = data.batch(0, cfg.batch_size)
    errors = check_model(spec, params, x, y)
    tol = tolerance("finite_difference", "float64")
    base = dict(task=task_name, knobs=knobs_label(overrides), backend="numpy",
                variant="finite-difference", dtype="float64", device="cpu")
    return [
        Row("finite_difference", **base, tensor=name, rel_err=float(err),
            tolerance=tol.normwise, allclose=err <= tol.normwise, passed=err <= tol.normwise)
        for name, err in errors.items()
    ]


def check_cell(task_name: str, preset: str, overrides: dict | None, backend: str,
               variant: str, dtype: str, device: str) -> dict[str, Any]:
    """Summary used by the timing harness: did every tensor agree, and the worst error."""
    try:
        rows = gradient_rows(task_name, preset, overrides, backend, variant, dtype, device)
    except Exception as exc:  # recorded with the timing, never fatal to a run
        return {"passed": False, "max_rel_err": float("nan"),
                "error": f"{type(exc).__name__}: {exc}"}
    return {
        "passed": all(r.passed for r in rows),
        "max_rel_err": max(r.rel_err for r in rows),
        "tolerance": rows[0].tolerance,
    }
