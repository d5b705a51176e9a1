"""One thread setting for every framework, applied before any is imported.

`configure(n)` writes the environment variables that OpenMP, MKL, OpenBLAS,
TensorFlow and XLA read at import time; each backend module then applies the
same number through its framework's own API (`threads()`). This module must
not import a framework.
"""

from __future__ import annotations

import os

ENV_VAR = "NNPARITY_THREADS"
_POOL_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


def configure(n: int | None = None) -> int:
    """Set every framework's thread count to `n` (default: all cores)."""
    n = n or os.cpu_count() or 1
    os.environ[ENV_VAR] = str(n)
    for var in _POOL_VARS:
        os.environ[var] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's import-time log noise
    return n


def threads() -> int:
    """The configured thread count (all cores when `configure` was not called)."""
    return int(os.environ.get(ENV_VAR, 0)) or os.cpu_count() or 1
