"""Gradient and trajectory agreement against the float64 NumPy reference.

For one (task, knobs, backend, variant, dtype, device) this builds the model
from the same canonical parameters and batch as the reference, and compares
the loss, the forward output and every gradient tensor in canonical layout by
normwise relative error and elementwise allclose, with tolerances from
`bench.agreement.tolerances`. It also runs the reference's own finite-difference check.
It times nothing and writes nothing.

Kinks. ReLU and max-pool are piecewise linear: where a backend's float32
pre-activation has another sign than the float64 reference's (or a pool
window another maximum), the two gradients differ legitimately, by the whole
contribution of that unit. For models with such layers the check reads the
backend's masks (`Program.piecewise_inputs`), counts the units whose mask
differs from the reference's ("kink flips"), and when there are any,
recomputes the float64 reference on the backend's masks. A tensor that fails
against the plain reference but agrees with the aligned one passes, and the
configuration's verdict is "agrees, N kink flips"; one that fails both is a
real disagreement. A recurrent ReLU (the vanilla cell's `activation="relu"`,
the IRNN) is not aligned: `piecewise_layers` names Dense/Conv2D ReLUs and
max-pools only, since a recurrent mask lives inside each backend's time loop,
so its float32 agreement is judged unaligned (it passes so at the tiny and
quick presets: 4.8e-7 to 8.4e-7 against 1e-4). Tolerances scale with the problem
(`tolerances.gradient_tolerance`, measured from the float32 NumPy reference).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import impls
from bench.agreement.finite_diff import check_model_detailed
from bench.agreement.metrics import normwise
from bench.agreement.tolerances import (
    RoundingError,
    Tolerance,
    finite_difference_tolerance,
    gradient_tolerance,
    tolerance,
)
from impls.base import piecewise_layers
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
    #: units whose ReLU / max-pool mask differs from the reference's (gradient
    #: checks of models with such layers); None where not counted
    kink_flips: int | None = None
    #: the error against the reference evaluated on the backend's masks (when flips > 0)
    aligned_rel_err: float | None = None
    #: flips per piecewise layer, "conv0=3,pool0=1,conv1=0" ("" where not counted)
    kink_layers: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def knobs_label(overrides: dict[str, Any] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((overrides or {}).items()))


def _agrees(value, ref, tol: Tolerance) -> tuple[float, bool, bool]:
    """(normwise error, elementwise allclose, both within `tol`)."""
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    err = normwise(value, ref)
    close = value.shape == ref.shape and bool(
        np.allclose(value, ref, rtol=tol.rtol,
                    atol=tol.atol_scale * float(np.max(np.abs(ref), initial=0.0)))
    )
    return err, close, bool(np.isfinite(err)) and err <= tol.normwise and close


def _row(check, base: dict, name: str, value, ref, dtype: str, device: str,
         tol: Tolerance | None = None) -> Row:
    tol = tol or tolerance(check, dtype, device)
    err, close, ok = _agrees(value, ref, tol)
    return Row(check, **base, tensor=name, rel_err=err, tolerance=tol.normwise,
               allclose=close, passed=ok)


def elementwise(value: np.ndarray, ref: np.ndarray) -> float:
    """max|value - ref| / max|ref| (the scale `Tolerance.atol_scale` is relative to)."""
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    scale = float(np.max(np.abs(ref), initial=0.0))
    diff = float(np.max(np.abs(value - ref), initial=0.0))
    return diff / scale if scale > 0 else diff


@functools.lru_cache(maxsize=32)
def _setup(task_name: str, preset: str, knobs: tuple):
    task = get_task(task_name)
    cfg = task.config(preset, dict(knobs))
    spec = task.model(cfg)
    params = init_params(spec, cfg.seed)
    data = task.data(cfg)
    return cfg, spec, params, data


Tensors = dict[str, np.ndarray]  # "loss", "output" and every gradient, canonical


def _tensors(loss, out, grads: dict) -> Tensors:
    return {"loss": np.asarray(loss, np.float64).reshape(()), "output": np.asarray(out),
            **{k: np.asarray(v) for k, v in grads.items()}}


def _masked_reference(task_name: str, preset: str, knobs: tuple, masks: dict | None) -> Tensors:
    """The float64 reference's tensors; with `masks`, evaluated on those linear pieces."""
    from impls.numpy import model  # the reference's own functions (bench imports impls)

    cfg, spec, params, data = _setup(task_name, preset, knobs)
    x, y = data.batch(0, cfg.batch_size)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x64 = np.asarray(x, np.float64)
    loss, grads = model.loss_and_grads(spec, p64, x64, y, masks=masks)
    out = model.forward_masked(spec, p64, x64, masks) if masks else model.forward(spec, p64, x64)
    return _tensors(loss, out, grads)


@functools.lru_cache(maxsize=8)
def _reference_full(task_name: str, preset: str, knobs: tuple) -> tuple[Tensors, dict]:
    """Float64 reference tensors on the first training batch, and its own masks."""
    from impls.numpy import model

    cfg, spec, params, data = _setup(task_name, preset, knobs)
    x, _ = data.batch(0, cfg.batch_size)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    masks = model.masks_from_inputs(spec, model.piecewise_inputs(spec, p64,
                                                                 np.asarray(x, np.float64)))
    return _masked_reference(task_name, preset, knobs, None), masks


def _reference(task_name: str, preset: str, knobs: tuple):
    """Float64 NumPy loss, output and gradients on the first training batch."""
    ref, _ = _reference_full(task_name, preset, knobs)
    grads = {k: v for k, v in ref.items() if k not in ("loss", "output")}
    return float(ref["loss"]), ref["output"], grads


@functools.lru_cache(maxsize=8)
def rounding_errors(task_name: str, preset: str, knobs: tuple) -> dict[str, RoundingError]:
    """The float32 NumPy reference's own error per tensor: what `gradient_tolerance`
    scales from. Its float64 side uses the float32 side's masks (rounding only)."""
    from impls.numpy import model

    cfg, spec, params, data = _setup(task_name, preset, knobs)
    x, y = data.batch(0, cfg.batch_size)
    program = impls.load("numpy").build(spec, params, variant="reference", dtype="float32",
                                        device="cpu",
                                        optimizer=OptimizerSpec(cfg.optimizer, cfg.lr))
    xd, yd = program.put(x), program.put(y)
    loss, grads = program.loss_and_grads(xd, yd)
    got = _tensors(loss, program.forward(xd), grads)
    masks = model.masks_from_inputs(spec, program.piecewise_inputs(xd))
    ref = _masked_reference(task_name, preset, knobs, masks or None)
    return {k: RoundingError(normwise(got[k], ref[k]), elementwise(got[k], ref[k])) for k in ref}


def kink_flips(spec, masks: dict, ref_masks: dict) -> dict[str, int]:
    """Per piecewise layer, how many units' masks differ (ReLU units, pool windows)."""
    return {name: int(np.count_nonzero(np.asarray(masks[name]) != ref_masks[name]))
            for name in piecewise_layers(spec)}


def gradient_rows(task_name: str, preset: str, overrides: dict | None, backend: str,
                  variant: str, dtype: str, device: str, precision: str = "fp32") -> list[Row]:
    """Loss, output and every gradient of one configuration against the reference
    (in a reduced `precision` mode the rows carry its error; their pass/fail
    is against the strict tolerance and means nothing: see `bench.agreement.precision`)."""
    knobs = tuple(sorted((overrides or {}).items()))
    cfg, spec, params, _ = _setup(task_name, preset, knobs)
    program = impls.load(backend).build(
        spec, params, variant=variant, dtype=dtype, device=device,
        optimizer=OptimizerSpec(cfg.optimizer, cfg.lr), precision=precision,
    )
    return program_rows(task_name, preset, overrides, backend, variant, dtype, device, program)


def program_setup(task_name: str, preset: str, overrides: dict | None):
    """(config, spec, canonical parameters) every checked program must be built from."""
    cfg, spec, params, _ = _setup(task_name, preset, tuple(sorted((overrides or {}).items())))
    return cfg, spec, params


def program_rows(task_name: str, preset: str, overrides: dict | None, backend: str,
                 variant: str, dtype: str, device: str, program: Any) -> list[Row]:
    """`gradient_rows` for a program already built (from `program_setup`'s parameters,
    with whatever speed settings it was built with: `bench.settings`), before any step."""
    knobs = tuple(sorted((overrides or {}).items()))
    cfg, spec, params, data = _setup(task_name, preset, knobs)
    _, _, ref_grads = _reference(task_name, preset, knobs)
    x, y = data.batch(0, cfg.batch_size)
    xd, yd = program.put(x), program.put(y)
    loss, grads = program.loss_and_grads(xd, yd)
    out = program.to_numpy(program.forward(xd))
    canonical = program.grads_to_canonical(grads)
    got = _tensors(program.to_numpy(loss), out,
                   {k: canonical.get(k, np.full_like(v, np.nan)) for k, v in ref_grads.items()})
    ref, ref_masks = _reference_full(task_name, preset, knobs)
    measured = rounding_errors(task_name, preset, knobs)
    flips, aligned, per_layer = None, None, ""
    inputs = program.piecewise_inputs(xd) if piecewise_layers(spec) else None
    if inputs is not None:
        from impls.numpy import model

        masks = model.masks_from_inputs(spec, inputs)
        counts = kink_flips(spec, masks, ref_masks)
        flips = sum(counts.values())
        per_layer = ",".join(f"{k}={v}" for k, v in counts.items())
        if flips:
            aligned = _masked_reference(task_name, preset, knobs, masks)
    base = dict(task=task_name, knobs=knobs_label(overrides), backend=backend,
                variant=variant, dtype=dtype, device=device)
    rows = []
    for name, value in got.items():
        tol = gradient_tolerance(dtype, device, measured.get(name))
        err, close, ok = _agrees(value, ref[name], tol)
        aligned_err = None
        if aligned is not None:
            aligned_err, _, aligned_ok = _agrees(value, aligned[name], tol)
            ok = ok or aligned_ok  # the difference is the kinks, not the backend
        rows.append(Row("gradient", **base, tensor=name, rel_err=err, tolerance=tol.normwise,
                        allclose=close, passed=ok, kink_flips=flips,
                        aligned_rel_err=aligned_err, kink_layers=per_layer))
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


#: Finite differences per preset: (entries sampled per tensor, batch rows used;
#: None = all). Each entry costs two float64 forward passes of the whole model,
#: so the large presets check fewer entries on a few rows of the batch: the
#: layers keep their full size, which is what the check is about.
FD_SAMPLING: dict[str, tuple[int, int | None]] = {
    "tiny": (64, None),
    "quick": (64, None),
    "standard": (32, 16),
    "large": (16, 4),
}


def finite_difference_rows(task_name: str, preset: str, overrides: dict | None) -> list[Row]:
    """The NumPy reference's analytic gradients against central differences (float64),
    sampled as `FD_SAMPLING[preset]` says, each tensor against a tolerance that
    allows for the differences' own cancellation error (`finite_difference_tolerance`)."""
    knobs = tuple(sorted((overrides or {}).items()))
    cfg, spec, params, data = _setup(task_name, preset, knobs)
    entries, rows = FD_SAMPLING.get(preset, (64, None))
    x, y = data.batch(0, min(cfg.batch_size, rows or cfg.batch_size))
    found = check_model_detailed(spec, params, x, y, max_entries=entries)
    base = dict(task=task_name, knobs=knobs_label(overrides), backend="numpy",
                variant="finite-difference", dtype="float64", device="cpu")
    out = []
    for name, (err, noise) in found.items():
        tol = finite_difference_tolerance(noise).normwise
        ok = bool(err <= tol)  # Python bools and floats: the rows are written as JSON
        out.append(Row("finite_difference", **base, tensor=name, rel_err=float(err),
                       tolerance=float(tol), allclose=ok, passed=ok))
    return out


def check_cell(task_name: str, preset: str, overrides: dict | None, backend: str,
               variant: str, dtype: str, device: str) -> dict[str, Any]:
    """Summary used by the timing harness: did every tensor agree, and the worst error."""
    try:
        rows = gradient_rows(task_name, preset, overrides, backend, variant, dtype, device)
    except Exception as exc:  # recorded with the timing, never fatal to a run
        return {"passed": False, "max_rel_err": float("nan"),
                "error": f"{type(exc).__name__}: {exc}"}
    return summary(rows)


def verdict(rows: list[Row]) -> str:
    """"agrees", "agrees, N kink flips" or "disagrees" for one configuration's rows."""
    if not all(r.passed for r in rows):
        return "disagrees"
    flips = max((r.kink_flips or 0) for r in rows) if rows else 0
    return f"agrees, {flips} kink flips" if flips else "agrees"


def summary(rows: list[Row]) -> dict[str, Any]:
    """What a timing cell records: the verdict, and the tensor nearest its tolerance."""
    worst = max(rows, key=lambda r: r.rel_err / r.tolerance)
    return {
        "passed": all(r.passed for r in rows),
        "verdict": verdict(rows),
        "max_rel_err": worst.rel_err,
        "tolerance": worst.tolerance,
        "worst_tensor": worst.tensor,
        "kink_flips": worst.kink_flips,
        "aligned_rel_err": worst.aligned_rel_err,
    }
