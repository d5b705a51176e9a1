"""CNN image classification: scikit-learn's bundled digits, or synthetic images.

conv(same) -> relu -> maxpool -> conv(valid) -> relu -> flatten -> dense,
softmax cross-entropy from logits; the metric is held-out accuracy. The
synthetic variant (3x32x32 by default) has learnable labels from a fixed
random teacher, for timing at realistic image sizes. Imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import INT_KNOB_MAX, Dataset, Task, accuracy, split
from tasks.spec import Conv2D, Dense, Flatten, MaxPool2D, ModelSpec


@dataclass(frozen=True)
class CNNConfig:
    data: str = "digits"  # "digits" (1,797 real 8x8 images) or "synthetic"
    image_size: int = 32  # synthetic only
    channels: int = 3  # synthetic only
    classes: int = 10  # synthetic only (digits has 10)
    n_samples: int = 2048  # synthetic only
    filters1: int = 8
    filters2: int = 16
    kernel: int = 3  # odd: the first conv uses 'same' padding
    batch_size: int = 64
    batch_sizes: tuple[int, ...] = (16, 64, 256)
    optimizer: str = "adam"
    lr: float = 3e-3
    steps: int = 600
    seed: int = 0

    # a train/test split needs two samples (tasks.base.split keeps at least one for test)
    RANGES: ClassVar[dict] = {"n_samples": (2, INT_KNOB_MAX)}
    CHOICES: ClassVar[dict] = {"data": ("digits", "synthetic"), "optimizer": ("sgd", "adam")}


PRESETS = {
    "tiny": dict(filters1=2, filters2=3, batch_size=3, batch_sizes=(3,), steps=20),
    "quick": dict(filters1=8, filters2=16, batch_size=64, batch_sizes=(16, 64, 256)),
    "standard": dict(
        data="synthetic", filters1=16, filters2=32, batch_size=64, batch_sizes=(16, 64, 256),
    ),
    "large": dict(
        data="synthetic", image_size=64, filters1=64, filters2=128, n_samples=8192,
        batch_size=256, batch_sizes=(64, 256, 1024),
    ),
}


def _image_shape(cfg: CNNConfig) -> tuple[int, int, int]:
    if cfg.data == "digits":
        return (1, 8, 8)
    return (cfg.channels, cfg.image_size, cfg.image_size)


def _classes(cfg: CNNConfig) -> int:
    return 10 if cfg.data == "digits" else cfg.classes


def build(cfg: CNNConfig) -> ModelSpec:
    layers = (
        Conv2D("conv0", cfg.filters1, cfg.kernel, padding="same", activation="relu"),
        MaxPool2D("pool0", 2),
        Conv2D("conv1", cfg.filters2, cfg.kernel, padding="valid", activation="relu"),
        Flatten("flatten"),
        Dense("dense0", _classes(cfg), "identity"),
    )
    return ModelSpec(_image_shape(cfg), layers, "softmax_cross_entropy")


def load(cfg: CNNConfig) -> Dataset:
    if cfg.data == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = x.reshape(-1, 1, 8, 8) / 16.0
    else:
        rng = np.random.default_rng(cfg.seed)
        shape = _image_shape(cfg)
        x = rng.standard_normal((cfg.n_samples, *shape))
        teacher = rng.standard_normal((int(np.prod(shape)), _classes(cfg)))
        y = np.argmax(x.reshape(len(x), -1) @ teacher, axis=1)
    train, test = split(len(x), 0.2, cfg.seed)
    y = y.astype(np.int64)
    return Dataset(x[train], y[train], x[test], y[test])


TASK = Task(
    name="cnn_classification",
    summary="Two-conv CNN on digits (real) or synthetic NCHW images, cross-entropy, accuracy",
    config_cls=CNNConfig,
    presets=PRESETS,
    build=build,
    load=load,
    metric_name="accuracy",
    metric=lambda logits, y: accuracy(np.asarray(logits), y),
)
