"""The study's settings: one frozen config, and the presets `nnparity study` offers.

`default` is the published study (within 10 minutes on 2 cores); `quick` is
the same pipeline at toy sizes for tests (well under a minute, NumPy alone
works). Framework-free; nothing here runs anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from bench.options import InputError

#: the adding problem's MSE when always answering 1.0 (variance of a sum of two U(0,1))
BASELINE_MSE = 1.0 / 6.0
#: a cell "learns" the adding problem at a length when its test MSE is below this
SUCCESS_MSE = 0.0167
#: sigmoid/tanh units whose derivative is below this share of its maximum are saturated
SATURATION = 0.01
#: the horizon: steps back at which ||dL/dh_t|| falls below this share of its last-step value
HORIZON_FRACTION = 1e-3


@dataclass(frozen=True)
class StudyConfig:
    cells: tuple[str, ...] = ("rnn", "lstm", "gru")
    seeds: tuple[int, ...] = (0, 1, 2)
    # -- gradient through time: dL/dh_t at these lengths, at init and after `learn_steps`
    time_lengths: tuple[int, ...] = (50, 100)
    hidden: int = 32  # recurrent width (the task's quick preset)
    rnn_layers: int = 1  # stacked recurrent layers; every layer's dL/dh_t is recorded
    eval_batch: int = 64  # held-out samples the gradients are averaged over
    # -- whether it learns: the adding problem at these lengths
    lengths: tuple[int, ...] = (10, 25, 50, 100, 200)
    learn_steps: int = 400  # the fixed training budget (Adam, lr 1e-2, batch 64)
    learn_lr: float = 1e-2
    batch_size: int = 64
    n_samples: int = 4000  # adding-problem samples, 20% held out
    # repeated on every backend, to show the curves coincide (seed `seeds[0]`)
    repeat_lengths: tuple[int, ...] = (25,)
    # -- gradient through depth: MLPs on the diabetes data
    depths: tuple[int, ...] = (2, 4, 8, 16)
    activations: tuple[str, ...] = ("sigmoid", "tanh", "relu")
    mlp_hidden: int = 64
    depth_steps: int = 300  # training steps before the "after training" measurement
    depth_lr: float = 1e-3
    # dtypes in which every other backend's gradients are compared with the reference
    agreement_dtypes: tuple[str, ...] = ("float64",)
    # -- how the training backend is chosen
    speed_length: int = 25  # sequence length of the quick speed measurement
    speed_seconds: float = 1.0  # time spent timing one backend and cell (at most 5 steps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StudyConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PRESETS: dict[str, StudyConfig] = {
    "default": StudyConfig(),
    "quick": StudyConfig(
        seeds=(0, 1), time_lengths=(12,), hidden=8, eval_batch=16, lengths=(6, 12),
        learn_steps=20, n_samples=400, repeat_lengths=(6,), depths=(2, 4),
        mlp_hidden=8, depth_steps=10, speed_length=6, speed_seconds=0.2,
        agreement_dtypes=("float64", "float32"),
    ),
}


def study_config(preset: str, seeds: int | None = None, steps: int | None = None) -> StudyConfig:
    """The preset, with `seeds` (a count) and `steps` (the learning budget) overridden."""
    if preset not in PRESETS:
        raise InputError(f"unknown study preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    if seeds is not None:
        if seeds <= 0:
            raise InputError(f"--seeds must be a positive integer, got {seeds}")
        cfg = replace(cfg, seeds=tuple(range(seeds)))
    if steps is not None:
        if steps <= 0:
            raise InputError(f"--steps must be a positive integer, got {steps}")
        cfg = replace(cfg, learn_steps=steps)
    return cfg
