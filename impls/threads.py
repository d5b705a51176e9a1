"""One thread policy for every framework, applied before any is imported.

Intra-op threads (the pool one op's kernel splits its work over) are the same
number `n` for every framework: `configure(n)` writes the environment
variables that OpenMP, MKL, OpenBLAS, TensorFlow and XLA read at import time,
and each backend module applies the same number through its framework's own
API. Inter-op threads (how many independent ops may run at once; only torch
and TensorFlow have such a pool) stay at the framework's default, which is
what a user of that framework gets, unless the user sets them: with
`configure(n, interop=k)` or the environment variable `NNPARITY_INTEROP_THREADS`.
What each framework then runs with is reported by its `Backend.threads()` and
recorded with every run. This module must not import a framework.
"""

from __future__ import annotations

import os

from impls.errors import BackendError

ENV_VAR = "NNPARITY_THREADS"
INTEROP_ENV_VAR = "NNPARITY_INTEROP_THREADS"
_POOL_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


def configure(n: int | None = None, interop: int | None = None) -> int:
    """Set every framework's intra-op thread count to `n` (default: all cores).

    Inter-op pools are left at each framework's default unless `interop` (or
    `NNPARITY_INTEROP_THREADS`, already in the environment) says otherwise.
    """
    n = n or os.cpu_count() or 1
    os.environ[ENV_VAR] = str(n)
    for var in _POOL_VARS:
        os.environ[var] = str(n)
    if interop is not None:
        os.environ[INTEROP_ENV_VAR] = str(interop)
    chosen = interop_threads()
    if chosen is not None:
        os.environ["TF_NUM_INTEROP_THREADS"] = str(chosen)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's import-time log noise
    return n


def threads() -> int:
    """The configured thread count (all cores when `configure` was not called)."""
    return int(os.environ.get(ENV_VAR, 0)) or os.cpu_count() or 1


def interop_threads() -> int | None:
    """The inter-op thread count the user asked for, or None: the framework's default."""
    value = os.environ.get(INTEROP_ENV_VAR, "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count <= 0:
        raise BackendError(f"{INTEROP_ENV_VAR} must be a positive integer, got {value!r}")
    return count
