"""What a task is: a config of knobs, presets, a model builder, data and a metric.

A task is framework-free plain data plus NumPy. Knob overrides arrive as
strings from the command line (`--set cell=gru`) and are parsed here against
the config dataclass's field types, so every task gets the same validation.
This module must not import `impls` or `bench`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.spec import ModelSpec, SpecError

PRESETS = ("tiny", "quick", "standard", "large")

# Range of every knob, checked once here for every task and command. Integer knobs
# (sizes, steps) are counts: 1 up to INT_KNOB_MAX unless the config class's RANGES says
# otherwise; float knobs (learning rates) are finite and positive; a seed is what
# NumPy's generators accept. A model beyond MAX_PARAMS parameters would only end in a
# MemoryError while its parameters are created.
INT_KNOB_MAX = 2**20
SEED_MAX = 2**32 - 1
MAX_PARAMS = 2**27  # 1 GiB of float64 parameters


class TaskError(SpecError):
    """Bad task input: unknown task, preset or knob, or a bad knob value."""


@dataclass(frozen=True)
class Dataset:
    """Train/test split as NumPy arrays: x float64, y float64 (regression) or int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def batch(self, index: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The `index`-th training batch, wrapping around the training set."""
        n = len(self.x_train)
        rows = (np.arange(batch_size) + index * batch_size) % n
        return self.x_train[rows], self.y_train[rows]

    def epoch_batches(self, rng: np.random.Generator, batch_size: int):
        """Shuffled full batches for one epoch (the tail that does not fill a batch is dropped)."""
        order = rng.permutation(len(self.x_train))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            rows = order[start : start + batch_size]
            yield self.x_train[rows], self.y_train[rows]


@dataclass(frozen=True)
class Task:
    """One benchmark task; `config` resolves a preset plus overrides."""

    name: str
    summary: str
    config_cls: type
    presets: Mapping[str, Mapping[str, Any]]
    build: Callable[[Any], ModelSpec]
    load: Callable[[Any], Dataset]
    metric_name: str | Callable[[Any], str]  # a label, or one that depends on the config
    metric: Callable[[np.ndarray, np.ndarray], float]  # (predictions, y_test) -> score
    # knobs the bench matrix sweeps by default, e.g. {"cell": ("rnn", "lstm", "gru")}
    sweep: Mapping[str, tuple] = dataclasses.field(default_factory=dict)

    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.config_cls))

    def config(self, preset: str = "quick", overrides: Mapping[str, Any] | None = None):
        """The config for `preset` with `overrides` (values may be strings)."""
        if preset not in self.presets:
            raise TaskError(f"unknown preset {preset!r}; choose from {', '.join(self.presets)}")
        values = dict(self.presets[preset])
        for key, raw in (overrides or {}).items():
            values[key] = parse_knob(self.config_cls, key, raw)
        try:
            cfg = self.config_cls(**values)
        except TypeError as exc:  # a preset table out of step with its config class
            raise TaskError(f"{self.name}: {exc}") from None
        spec = self.build(cfg)  # validates sizes through ModelSpec
        n_params = sum(math.prod(shape) for shape in spec.param_shapes().values())
        if n_params > MAX_PARAMS:
            raise TaskError(f"{self.name}: {n_params:,} parameters is more than the "
                            f"{MAX_PARAMS:,} a task may have; use smaller knobs")
        return cfg

    def metric_label(self, cfg) -> str:
        return self.metric_name(cfg) if callable(self.metric_name) else self.metric_name

    def model(self, cfg) -> ModelSpec:
        return self.build(cfg)

    def data(self, cfg) -> Dataset:
        return self.load(cfg)


def parse_knob(config_cls: type, key: str, raw: Any) -> Any:
    """Parse one `key=value` override against the config field's declared type."""
    hints = typing.get_type_hints(config_cls)
    if key not in hints:
        raise TaskError(f"unknown knob {key!r}; choose from {', '.join(hints)}")
    kind = hints[key]
    choices = getattr(config_cls, "CHOICES", {}).get(key)
    if not isinstance(raw, str):
        value = raw
    elif kind is bool:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise TaskError(f"knob {key} takes true or false, got {raw!r}")
        value = raw.lower() in ("true", "1", "yes")
    elif kind is int:
        try:
            value = int(raw)
        except ValueError:
            raise TaskError(f"knob {key} takes an integer, got {raw!r}") from None
    elif kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise TaskError(f"knob {key} takes a number, got {raw!r}") from None
    elif typing.get_origin(kind) is tuple:
        try:
            value = tuple(int(v) for v in raw.split(",") if v)
        except ValueError:
            raise TaskError(f"knob {key} takes comma-separated integers, got {raw!r}") from None
    else:
        value = raw
    if choices is not None and value not in choices:
        raise TaskError(f"unknown {key} {value!r}; choose from {', '.join(choices)}")
    low, high = getattr(config_cls, "RANGES", {}).get(
        key, (0, SEED_MAX) if key == "seed" else (1, INT_KNOB_MAX))
    if kind is int and not low <= value <= high:
        what = (f"a positive integer up to {high}" if low == 1
                else f"an integer from {low} to {high}")
        raise TaskError(f"knob {key} must be {what}, got {value!r}")
    if kind is float and not (math.isfinite(value) and value > 0):
        raise TaskError(f"knob {key} must be a finite positive number, got {raw!r}")
    if typing.get_origin(kind) is tuple and (not value or min(value) < 1
                                             or max(value) > INT_KNOB_MAX):
        raise TaskError(f"knob {key} takes integers from 1 to {INT_KNOB_MAX}, got {raw!r}")
    return value


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale by the training set's mean and standard deviation only."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded permutation split into train and test row indices."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return order[n_test:], order[:n_test]


def r2_score(pred: np.ndarray, y: np.ndarray) -> float:
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot


def mse_score(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((pred - y) ** 2))


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == y))
