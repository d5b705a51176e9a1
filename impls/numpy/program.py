"""The NumPy Program: the reference model's parameters and optimiser state.

Every array a program makes stays in its dtype (float32 runs never upcast to
float64). The per-layer math lives in `layers`, `recurrent` and `losses`,
chained by `model`; this module only wires it into the `Program` interface
and must not import any other framework, nor `bench`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impls.base import Program, check_recurrent, label_dtype
from impls.numpy import model
from impls.numpy.optim import init_state, make_update
from tasks.optim import OptimizerSpec
from tasks.spec import ModelSpec

LABELS = label_dtype("numpy")


class NumpyProgram(Program):
    """One model in NumPy; parameters are updated in place by `step`."""

    def __init__(
        self, spec: ModelSpec, params: dict[str, np.ndarray], dtype: str, optimizer: OptimizerSpec
    ) -> None:
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self._params = {k: np.array(v, dtype=self.dtype) for k, v in params.items()}
        self._state = init_state(optimizer, self._params)
        self._update = make_update(optimizer)

    def put(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.integer):
            return array.astype(LABELS)
        return array.astype(self.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return model.forward(self.spec, self._params, x)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, dict[str, np.ndarray]]:
        return model.loss_and_grads(self.spec, self._params, x, y)

    def step(self, x: np.ndarray, y: np.ndarray) -> Any:
        loss, grads = model.loss_and_grads(self.spec, self._params, x, y)
        self._params, self._state = self._update(self._params, grads, self._state)
        return loss

    def piecewise_inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return model.piecewise_inputs(self.spec, self._params, x)

    def sync(self, value: Any = None) -> None:
        """NumPy computes eagerly: nothing is ever queued."""

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def grads_to_canonical(self, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in grads.items()}

    def params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._params.items()}

    def hidden_state_grads(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        check_recurrent(self.spec)
        return model.loss_and_state_grads(self.spec, self._params, x, y)[1]
