"""The study's settings: one frozen config, the setups it compares, and its presets.

A *setup* is a cell with its initialisation, named `cell` or `cell-variant`:
`rnn` (recurrent weights uniform ±1/sqrt(H), the canonical init), `rnn-orthogonal`,
`rnn-identity` (the IRNN of Le et al. 2015: W_hh = I, recurrent biases 0, ReLU
activation; every other vanilla setup is tanh), `lstm` (forget-gate bias 1), `lstm-fb0`
(forget-gate bias 0), `gru`, and `lstm-orthogonal`, `gru-orthogonal` (each gate's block
orthogonal). `default` is the published study (within 15 minutes on 2 cores);
`long` the 10,000-step budget (hours, not for this machine's default); `quick` the
same pipeline at toy sizes for tests (NumPy alone works). Framework-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from bench.options import InputError

#: the adding problem's MSE when always answering 1.0 (variance of a sum of two U(0,1))
BASELINE_MSE = 1.0 / 6.0
#: a run "succeeds" at a budget when its held-out MSE at that step is below this
SUCCESS_MSE = 0.0167
#: sigmoid/tanh units whose derivative is below this share of its maximum are saturated
SATURATION = 0.01
#: the horizon: steps back at which ||dL/dh_t|| falls below this share of its last-step value
HORIZON_FRACTION = 1e-3
#: the recurrent cells, in the order of every table
CELLS = ("rnn", "lstm", "gru")
#: a setup's variant suffix -> (recurrent init, LSTM forget-gate bias)
VARIANTS = {"": ("uniform", 1.0), "orthogonal": ("orthogonal", 1.0),
            "identity": ("identity", 1.0), "fb0": ("uniform", 0.0)}


def setup_parts(setup: str) -> tuple[str, str, float]:
    """(cell, recurrent init, forget-gate bias) of a setup name such as `rnn-identity`."""
    cell, _, variant = setup.partition("-")
    if cell not in CELLS or variant not in VARIANTS or (variant == "fb0" and cell != "lstm"):
        raise InputError(f"unknown study setup {setup!r}: a cell ({', '.join(CELLS)}) "
                         f"optionally with -orthogonal, -identity, or (lstm) -fb0")
    init, forget_bias = VARIANTS[variant]
    return cell, init, forget_bias


def setup_activation(setup: str) -> str:
    """The vanilla cell's activation in a setup: ReLU for `rnn-identity` (the IRNN of
    Le et al. 2015), tanh otherwise (gated cells have fixed gate activations)."""
    cell, init, _ = setup_parts(setup)
    return "relu" if cell == "rnn" and init == "identity" else "tanh"


def setup_label(setup: str) -> str:
    """How a setup reads in prose: `lstm (uniform init, forget bias 1)`,
    `rnn (identity init, relu)`."""
    cell, init, forget_bias = setup_parts(setup)
    extra = f", forget bias {forget_bias:g}" if cell == "lstm" else ""
    extra += f", {setup_activation(setup)}" if cell == "rnn" else ""
    return f"{cell} ({init} init{extra})"


@dataclass(frozen=True)
class StudyConfig:
    setups: tuple[str, ...] = ("rnn", "rnn-orthogonal", "rnn-identity", "lstm", "lstm-fb0",
                               "gru")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # -- gradient through time: dL/dh_t at these lengths, at init and after `learn_steps`
    time_lengths: tuple[int, ...] = (50, 100)
    hidden: int = 32  # recurrent width (the task's quick preset)
    rnn_layers: int = 1  # stacked recurrent layers; every layer's dL/dh_t is recorded
    eval_batch: int = 64  # held-out samples the gradients are averaged over
    # -- whether it learns: the adding problem at these lengths, held-out MSE every
    # `eval_every` steps up to `learn_steps`; the report reads it at each of `budgets`
    lengths: tuple[int, ...] = (10, 25, 50, 100)
    learn_steps: int = 2000
    budgets: tuple[int, ...] = (400, 2000)
    eval_every: int = 50
    learn_lr: float = 1e-2  # Adam
    batch_size: int = 64
    n_samples: int = 4000  # adding-problem samples, 20% held out
    # -- the published result reproduced: Le et al. 2015's adding problem (tanh RNN,
    # IRNN-initialised RNN, LSTM) at these lengths, trained like the rest
    paper_setups: tuple[str, ...] = ("rnn", "rnn-identity", "lstm")
    paper_lengths: tuple[int, ...] = (150,)
    # repeated on every backend (seed `seeds[0]`, the first `repeat_steps` steps) to show
    # the learning curves coincide
    repeat_lengths: tuple[int, ...] = (25, 150)
    repeat_steps: int = 400
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

    def __post_init__(self) -> None:
        for setup in (*self.setups, *self.paper_setups):
            setup_parts(setup)
        if not self.budgets or max(self.budgets) > self.learn_steps:
            raise InputError(f"the budgets {self.budgets} must be within the "
                             f"{self.learn_steps} training steps")
        if any(b % self.eval_every for b in self.budgets):
            raise InputError(f"every budget {self.budgets} must be a multiple of the "
                             f"evaluation interval {self.eval_every}")

    @property
    def cells(self) -> tuple[str, ...]:
        return tuple(c for c in CELLS if any(setup_parts(s)[0] == c for s in self.setups))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StudyConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


#: the published study's setups: every cell with the uniform and the orthogonal
#: recurrent init, the IRNN, and the LSTM's forget-gate bias 0 (the quick preset keeps
#: the dataclass's six, for the tests' time)
FULL_SETUPS = ("rnn", "rnn-orthogonal", "rnn-identity", "lstm", "lstm-orthogonal",
               "lstm-fb0", "gru", "gru-orthogonal")

PRESETS: dict[str, StudyConfig] = {
    "default": StudyConfig(setups=FULL_SETUPS),
    "long": StudyConfig(
        setups=FULL_SETUPS, seeds=tuple(range(10)), lengths=(10, 25, 50, 100, 200),
        learn_steps=10000,
        budgets=(400, 2000, 10000), eval_every=100, n_samples=12000,
        paper_lengths=(150, 200, 300), repeat_steps=2000,
    ),
    "quick": StudyConfig(
        seeds=(0, 1), time_lengths=(12,), hidden=8, eval_batch=16, lengths=(6, 12),
        learn_steps=20, budgets=(10, 20), eval_every=5, n_samples=400, paper_lengths=(16,),
        repeat_lengths=(6,), repeat_steps=10, depths=(2, 4), mlp_hidden=8, depth_steps=10,
        speed_length=6, speed_seconds=0.2, agreement_dtypes=("float64", "float32"),
    ),
}


def study_config(preset: str, seeds: int | None = None, steps: int | None = None) -> StudyConfig:
    """The preset, with `seeds` (a count) and `steps` (the longest budget) overridden;
    budgets beyond `steps` are dropped and `steps` becomes the last."""
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
        every = min(cfg.eval_every, steps)
        while steps % every:
            every -= 1
        budgets = tuple(b for b in cfg.budgets if b < steps and b % every == 0) + (steps,)
        cfg = replace(cfg, learn_steps=steps, budgets=budgets, eval_every=every,
                      repeat_steps=min(cfg.repeat_steps, steps))
    return cfg
