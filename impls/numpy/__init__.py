"""The NumPy reference backend: hand-written forward and backward, CPU only.

NumPy reads its thread count from the environment (`impls.threads`), so there
is no runtime configuration to apply here; this module only makes `BACKEND`.
The modules of this package must not import any other framework, nor `bench`.
"""

from __future__ import annotations

from impls.numpy.backend import NumpyBackend

BACKEND = NumpyBackend()

__all__ = ["BACKEND"]
