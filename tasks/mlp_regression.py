"""MLP regression: scikit-learn's bundled diabetes data, or Friedman #1 for size sweeps.

A Dense stack with one activation throughout and a linear output, trained
with MSE; the held-out metric is R^2 on the standardised target. Imports no
framework, nothing from `impls` or `bench`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import INT_KNOB_MAX, Dataset, Task, r2_score, split, standardize
from tasks.spec import ACTIVATIONS, Dense, ModelSpec


@dataclass(frozen=True)
class MLPConfig:
    data: str = "diabetes"  # "diabetes" (442 real samples, 10 features) or "friedman" (synthetic)
    n_features: int = 10  # friedman only: inputs beyond the 5 informative ones are noise
    n_samples: int = 2000  # friedman only
    hidden: int = 64  # width of every hidden layer
    depth: int = 2  # number of hidden layers
    activation: str = "tanh"
    batch_size: int = 64
    batch_sizes: tuple[int, ...] = (16, 64, 256)  # the bench's batch-size sweep
    optimizer: str = "adam"
    lr: float = 1e-3
    steps: int = 300  # training steps for `nnparity train`; diabetes overfits past ~500
    seed: int = 0

    # a train/test split needs two samples (tasks.base.split keeps at least one for test)
    RANGES: ClassVar[dict] = {"n_samples": (2, INT_KNOB_MAX)}
    CHOICES: ClassVar[dict] = {
        "data": ("diabetes", "friedman"),
        "activation": ACTIVATIONS,
        "optimizer": ("sgd", "adam"),
    }


PRESETS = {
    "tiny": dict(hidden=5, depth=2, batch_size=4, batch_sizes=(4,), steps=20),
    "quick": dict(hidden=64, depth=2, batch_size=64, batch_sizes=(16, 64, 256)),
    "standard": dict(
        data="friedman", n_features=64, n_samples=8192, hidden=256, depth=3,
        batch_size=256, batch_sizes=(32, 256, 1024),
    ),
    "large": dict(
        data="friedman", n_features=256, n_samples=32768, hidden=1024, depth=4,
        batch_size=1024, batch_sizes=(256, 1024, 4096),
    ),
}


def build(cfg: MLPConfig) -> ModelSpec:
    n_in = 10 if cfg.data == "diabetes" else cfg.n_features
    layers = [Dense(f"dense{i}", cfg.hidden, cfg.activation) for i in range(cfg.depth)]
    layers.append(Dense(f"dense{cfg.depth}", 1, "identity"))
    return ModelSpec(input_shape=(n_in,), layers=tuple(layers), loss="mse")


def load(cfg: MLPConfig) -> Dataset:
    if cfg.data == "diabetes":
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
    else:
        from sklearn.datasets import make_friedman1

        if cfg.n_features < 5:
            from tasks.base import TaskError

            raise TaskError(f"friedman needs n_features >= 5, got {cfg.n_features}")
        x, y = make_friedman1(cfg.n_samples, cfg.n_features, noise=1.0, random_state=cfg.seed)
    train, test = split(len(x), 0.2, cfg.seed)
    x_train, x_test = standardize(x[train], x[test])
    y_train, y_test = standardize(y[train, None], y[test, None])
    return Dataset(x_train, y_train, x_test, y_test)


TASK = Task(
    name="mlp_regression",
    summary="Dense stack on diabetes (real) or Friedman #1 (synthetic), MSE, R^2",
    config_cls=MLPConfig,
    presets=PRESETS,
    build=build,
    load=load,
    metric_name="R^2",
    metric=lambda pred, y: r2_score(np.asarray(pred), y),
    sweep={"activation": ACTIVATIONS[1:]},
)
