"""RNN sequence learning: the adding problem, or digits read row by row.

The adding problem (Hochreiter & Schmidhuber 1997): each step carries a value
in [0, 1) and a marker; exactly two steps are marked, one in each half, and
the target is the sum of their values. Always answering 1.0 scores an MSE of
about 1/6 (the variance of a sum of two uniforms), so learning shows as an MSE
well below 0.167. With `data=digits_rows` the 8 rows of a digit are 8 steps of
8 features, classified from the last state. Cell `rnn`, `lstm` or `gru`; with
`layers=2` the first layer returns sequences. Imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import INT_KNOB_MAX, Dataset, Task, accuracy, mse_score, split
from tasks.spec import CELLS, RNN_ACTIVATIONS, Dense, ModelSpec, Recurrent


@dataclass(frozen=True)
class RNNConfig:
    data: str = "adding"  # "adding" (synthetic) or "digits_rows" (real digits, 8 steps)
    cell: str = "lstm"
    activation: str = "tanh"  # the vanilla cell's: "tanh" or "relu" (IRNN); rnn only
    hidden: int = 32
    layers: int = 1  # stacked recurrent layers; all but the last return sequences
    seq_len: int = 50  # adding only
    n_samples: int = 12000  # adding only
    batch_size: int = 64
    batch_sizes: tuple[int, ...] = (16, 64, 256)
    optimizer: str = "adam"
    lr: float = 1e-2
    steps: int = 1000  # LSTM/GRU pass MSE 0.0167 near step 500 at T=50
    seed: int = 0

    # a train/test split needs two samples (tasks.base.split keeps at least one for test)
    RANGES: ClassVar[dict] = {"n_samples": (2, INT_KNOB_MAX)}
    CHOICES: ClassVar[dict] = {
        "data": ("adding", "digits_rows"),
        "cell": CELLS,
        "activation": RNN_ACTIVATIONS,
        "optimizer": ("sgd", "adam"),
    }


PRESETS = {
    "tiny": dict(hidden=3, layers=2, seq_len=4, n_samples=64, batch_size=2, batch_sizes=(2,),
                 steps=20),
    "quick": dict(hidden=32, seq_len=50, batch_size=64, batch_sizes=(16, 64, 256)),
    "standard": dict(hidden=128, seq_len=100, batch_size=64, batch_sizes=(16, 64, 256)),
    "large": dict(hidden=512, seq_len=200, batch_size=256, batch_sizes=(64, 256, 1024),
                  n_samples=20000),
}


def build(cfg: RNNConfig) -> ModelSpec:
    if cfg.data == "adding":
        input_shape, out, loss = (cfg.seq_len, 2), 1, "mse"
    else:
        input_shape, out, loss = (8, 8), 10, "softmax_cross_entropy"
    layers = [
        Recurrent(f"rnn{i}", cfg.cell, cfg.hidden, return_sequences=i < cfg.layers - 1,
                  activation=cfg.activation)
        for i in range(cfg.layers)
    ]
    layers.append(Dense("dense0", out, "identity"))
    return ModelSpec(input_shape, tuple(layers), loss)


def adding_problem(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, length, 2) inputs [value, marker] and (n, 1) targets."""
    if length < 2:
        from tasks.base import TaskError

        raise TaskError(f"the adding problem needs seq_len >= 2, got {length}")
    values = rng.uniform(0.0, 1.0, (n, length))
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second])[:, None]
    return x, y


def load(cfg: RNNConfig) -> Dataset:
    if cfg.data == "adding":
        rng = np.random.default_rng(cfg.seed)
        x, y = adding_problem(cfg.n_samples, cfg.seq_len, rng)
    else:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x, y = x.reshape(-1, 8, 8) / 16.0, y.astype(np.int64)
    train, test = split(len(x), 0.2, cfg.seed)
    return Dataset(x[train], y[train], x[test], y[test])


def _metric(pred: np.ndarray, y: np.ndarray) -> float:
    pred = np.asarray(pred)
    return mse_score(pred, y) if y.dtype.kind == "f" else accuracy(pred, y)


TASK = Task(
    name="rnn_sequence",
    summary="RNN/LSTM/GRU on the adding problem (synthetic) or digits row by row (real)",
    config_cls=RNNConfig,
    presets=PRESETS,
    build=build,
    load=load,
    metric_name=lambda cfg: "test MSE" if cfg.data == "adding" else "accuracy",
    metric=_metric,
    sweep={"cell": CELLS},
)
