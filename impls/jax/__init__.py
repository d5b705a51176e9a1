"""The JAX backend: a `jax.jit` program per model.

Importing this package imports JAX, so only `impls.load("jax")` may do it. The
process-wide settings JAX reads once are applied here, before the first
`import jax`: the shared thread count (as XLA flags), no GPU preallocation
(so backends can share one GPU), float64 support and full-precision matmuls.
Nothing else lives here; no module of this package may import `bench`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from impls.threads import threads

if TYPE_CHECKING:
    from impls.jax.backend import JaxBackend

# Only flags that jaxlib 0.10.2 knows: an unknown flag in XLA_FLAGS aborts the process.
_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads")


def _configure_environment(n_threads: int) -> None:
    """Set what XLA reads at client start-up; a no-op for flags the user already set."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    flags = os.environ.get("XLA_FLAGS", "").split()
    if not any(f.startswith(_THREAD_FLAGS) for f in flags):
        flags += [
            f"--xla_cpu_multi_thread_eigen={'true' if n_threads > 1 else 'false'}",
            f"intra_op_parallelism_threads={n_threads}",
        ]
    os.environ["XLA_FLAGS"] = " ".join(flags)


def _load() -> JaxBackend:
    """Configure the environment, then import JAX and set its process-wide options."""
    _configure_environment(THREADS)
    import jax

    # float64 is off by default in JAX; the agreement checks compare every backend
    # with the float64 NumPy reference, so float64 must really be float64 here.
    # float32 programs stay float32 because they cast params and inputs explicitly.
    jax.config.update("jax_enable_x64", True)
    # Full fp32 matmuls and convolutions on GPU (no TF32), so GPU results agree with
    # the reference; recorded in `Program.precision`. No effect on CPU.
    jax.config.update("jax_default_matmul_precision", "highest")

    from impls.jax.backend import JaxBackend

    return JaxBackend(intra_op=THREADS)


THREADS = threads()
BACKEND = _load()

__all__ = ["BACKEND", "THREADS"]
