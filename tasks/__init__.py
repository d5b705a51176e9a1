"""Framework-free task definitions: model specs, data, losses, metrics, presets.

`tasks` never imports `impls` or `bench`, nor any deep-learning framework.
"""

from __future__ import annotations

from tasks import cnn_classification, mlp_regression, rnn_sequence
from tasks.base import PRESETS, Dataset, Task, TaskError

TASKS: dict[str, Task] = {
    t.name: t for t in (mlp_regression.TASK, cnn_classification.TASK, rnn_sequence.TASK)
}

__all__ = ["PRESETS", "TASKS", "Dataset", "Task", "TaskError", "get_task"]


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]
