"""The NumPy Backend: one variant ("reference"), CPU only.

Parameters arrive in canonical layout, which is NumPy's native layout, so
building a program is a copy and a cast. This module must not import any
other framework, nor `bench`.
"""

from __future__ import annotations

import numpy as np

from impls.base import Backend, Program
from impls.numpy.program import NumpyProgram
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec


class NumpyBackend(Backend):
    name = "numpy"
    variants = ("reference",)

    def version(self) -> str:
        return np.__version__

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def _build(self, spec: ModelSpec, params: dict[str, np.ndarray], *, variant: str,
               dtype: str, device: str, optimizer: OptimizerSpec) -> Program:
        return NumpyProgram(spec, params, dtype, optimizer)
