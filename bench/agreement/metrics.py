"""Distances between a tensor and its reference, for every agreement check.

A leaf module (NumPy only): `check` and `finite_diff` both measure with it, so
neither has to import the other for it. Must not import a framework.
"""

from __future__ import annotations

import numpy as np


def normwise(value: np.ndarray, ref: np.ndarray) -> float:
    """||value - ref|| / ||ref||, with an absolute fallback when ref is all zeros."""
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    if value.shape != ref.shape:
        return float("inf")
    diff = float(np.linalg.norm((value - ref).ravel()))
    scale = float(np.linalg.norm(ref.ravel()))
    return diff / scale if scale > 0 else diff
