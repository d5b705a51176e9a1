"""The error a precision mode costs, measured the way agreement is measured, never gated.

For one (task, knobs, backend, variant, dtype, device, precision mode) this
takes the same canonical parameters and batch as the float64 NumPy reference
and reports the normwise relative error of the loss, of the output and of the
worst gradient tensor (`check.gradient_rows`), and of the loss sequence of
`TRAJECTORY_STEPS` optimiser steps (`check.trajectory_rows`). Reduced modes
(tf32, bf16, fp16) are compared with their stated `ExpectedRange`
(`bench.agreement.tolerances.EXPECTED`) and *flagged* when outside it; the
strict gate (`gradcheck`, `check_cell`) stays fp32/fp64 only. Strict float32
cells get the same numbers, so the report can put both side by side.

It times nothing, writes nothing and imports frameworks only through `impls`.
"""

from __future__ import annotations

import math
from typing import Any

from bench.agreement.check import TRAJECTORY_STEPS, gradient_rows, trajectory_rows
from bench.agreement.tolerances import expected_range
from tasks import get_task

#: the summary keys, in report order: quantity -> key of its error
QUANTITIES = {"loss": "loss_rel_err", "gradient": "grad_rel_err",
              "trajectory": "trajectory_rel_err"}


def precision_error(task_name: str, preset: str, overrides: dict | None, backend: str,
                    variant: str, dtype: str, device: str, precision: str,
                    steps: int = TRAJECTORY_STEPS) -> dict[str, Any]:
    """Errors against the float64 reference, each reduced mode's expected range, and
    `flags` naming every quantity outside it. Never raises: a failure is recorded
    in `error` (the cell's timing stands)."""
    try:
        grads = gradient_rows(task_name, preset, overrides, backend, variant, dtype, device,
                              precision=precision)
        cfg = get_task(task_name).config(preset, dict(overrides or {}))
        trajectory = trajectory_rows(task_name, preset, overrides, backend, variant, dtype,
                                     device, cfg.optimizer, steps, precision=precision)
    except Exception as exc:  # recorded with the timing, never fatal to a run
        return {"precision": precision, "error": f"{type(exc).__name__}: {exc}"[:300]}
    by_tensor = {r.tensor: r.rel_err for r in grads}
    out: dict[str, Any] = {
        "precision": precision,
        "loss_rel_err": by_tensor.pop("loss"),
        "output_rel_err": by_tensor.pop("output"),
        "grad_rel_err": max(by_tensor.values()) if by_tensor else math.nan,
        "worst_grad": max(by_tensor, key=by_tensor.__getitem__) if by_tensor else "",
        # the loss sequence over `steps` optimiser steps (the trajectory check's first row)
        "trajectory_rel_err": trajectory[0].rel_err,
        "trajectory_steps": steps,
        "optimizer": cfg.optimizer,
    }
    out.update(judge(out, precision))
    return out


def judge(errors: dict[str, Any], precision: str) -> dict[str, Any]:
    """`expected` ranges and `flags` (quantities outside them) for a reduced mode;
    nothing to judge for the strict mode, whose gate is the agreement check."""
    expected, flags = {}, []
    for quantity, key in QUANTITIES.items():
        rng = expected_range(quantity, precision)
        value = errors.get(key)
        if rng is None or value is None:
            continue
        expected[quantity] = [rng.low, rng.high]
        if not math.isfinite(value) or value > rng.high:
            flags.append(f"{quantity} error {value:.1e} above the expected {rng.high:.0e}")
        elif value < rng.low:
            flags.append(f"{quantity} error {value:.1e} below {rng.low:.0e}: "
                         f"{precision} seems not applied")
    return {"expected": expected, "flags": flags, "within": not flags} if expected else {}
