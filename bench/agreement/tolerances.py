"""The one table of agreement tolerances, by check, dtype and device.

Every comparison against the float64 NumPy reference reads its tolerance from
here; an entry looser than the design's starting point carries its reason
beside it. Framework-free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    normwise: float  # ||g - g_ref|| / ||g_ref||
    rtol: float  # elementwise allclose: |g - g_ref| <= atol + rtol * |g_ref| ...
    atol_scale: float  # ... with atol = atol_scale * max|g_ref| (entries near zero)


# (check, dtype, device) -> Tolerance; device "*" matches any device.
TOLERANCES: dict[tuple[str, str, str], Tolerance] = {
    # One loss + gradient evaluation from identical parameters and inputs.
    ("gradient", "float64", "*"): Tolerance(normwise=1e-10, rtol=1e-7, atol_scale=1e-10),
    # float32 rounding (~6e-8 per op) accumulated over a few hundred ops per output.
    ("gradient", "float32", "*"): Tolerance(normwise=1e-4, rtol=1e-2, atol_scale=1e-4),
    # 20 optimiser steps: float64 differences stay at rounding level.
    ("trajectory", "float64", "*"): Tolerance(normwise=1e-8, rtol=1e-6, atol_scale=1e-8),
    # 20 float32 steps compound rounding; Adam divides by sqrt(v) + eps, which
    # magnifies differences in near-zero gradients, so allow 1e-3 normwise.
    ("trajectory", "float32", "*"): Tolerance(normwise=1e-3, rtol=5e-2, atol_scale=1e-3),
    # The NumPy reference against central finite differences (float64, eps=1e-6):
    # truncation error O(eps^2) plus cancellation O(1e-16 / eps).
    ("finite_difference", "float64", "*"): Tolerance(normwise=1e-6, rtol=1e-3, atol_scale=1e-6),
}

CHECKS = ("gradient", "trajectory", "finite_difference")


def tolerance(check: str, dtype: str, device: str = "cpu") -> Tolerance:
    """The tolerance for a check in `dtype` on `device` (exact device first)."""
    for key in ((check, dtype, device), (check, dtype, "*")):
        if key in TOLERANCES:
            return TOLERANCES[key]
    raise KeyError(f"no tolerance for {check} in {dtype} on {device}")
