"""Training one task on one backend to its held-out metric: the library of `nnparity
train` (bench/commands/train.py) and of the race (bench/race/worker.py).

The same loop drives every backend: canonical parameters from the task's
seed, shuffled batches from a seeded generator, `Program.step` per batch, with
the progress display on stderr; `curve_summary` summarises the loss curve. It
does not time anything for the benchmark (see `bench.timing.runner`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import impls
from bench.progress import ProgressLine
from impls.base import STRICT
from tasks.base import Task
from tasks.optim import OptimizerSpec
from tasks.params import init_params


@dataclass(frozen=True)
class TrainResult:
    losses: np.ndarray  # loss before each step (as many as steps were taken)
    metric: float
    seconds: float  # from before the first step to the last evaluation (or step)
    # with `stop_when`: (steps taken, held-out metric) at every evaluation, the last
    # one included, and the seconds they took (inside `seconds`)
    evaluations: tuple[tuple[int, float], ...] = ()
    eval_seconds: float = 0.0
    first_step_seconds: float = 0.0  # the first step alone, synchronised (compiles, if any)


def _held_out(task: Task, program, data) -> float:
    pred = program.to_numpy(program.forward(program.put(data.x_test)))
    return float(task.metric(pred, data.y_test))


def train(task: Task, cfg, backend: str, variant: str | None, dtype: str, device: str,
          steps: int, progress: bool = True, stop_when: Callable[[float], bool] | None = None,
          eval_every: int = 100, precision: str = STRICT, seed: int | None = None,
          data=None, program=None) -> TrainResult:
    """Train for `steps` optimiser steps; with `stop_when`, the held-out metric is
    evaluated every `eval_every` steps and training stops at the first evaluation
    where `stop_when(metric)` holds (the result then holds the steps actually taken).

    `seed` seeds the initial parameters and the batch order (default `cfg.seed`; the
    data stay `cfg`'s). `data` (the task's `Dataset`) and `program` (built from
    `init_params(spec, seed)`) may be given already made, so that a caller can time
    their making apart from training (`nnparity race`)."""
    if eval_every <= 0:
        raise ValueError(f"eval_every must be positive, got {eval_every}")
    seed = cfg.seed if seed is None else seed
    if data is None:
        data = task.data(cfg)
    if program is None:
        program = build_program(task, cfg, backend, variant, dtype, device, precision, seed)
    rng = np.random.default_rng(seed + 1)
    bar = ProgressLine(steps, f"training {backend}/{variant or impls.load(backend).variants[0]}",
                       enabled=progress)
    losses = np.empty(steps)
    pending = []  # device losses, read back in chunks to avoid a sync per step
    evaluations: list[tuple[int, float]] = []
    eval_seconds = first_step = 0.0
    start = time.perf_counter()
    done = 0
    metric = None
    while done < steps and metric is None:
        for x, y in data.epoch_batches(rng, min(cfg.batch_size, len(data.x_train))):
            pending.append(program.step(program.put(x), program.put(y)))
            done += 1
            if (len(pending) == 50 or done == steps or done == 1
                    or (stop_when and done % eval_every == 0)):
                losses[done - len(pending):done] = [float(program.to_numpy(v)) for v in pending]
                pending.clear()
                if done == 1:
                    first_step = time.perf_counter() - start
                bar.advance(weight=done - bar.done)
            if stop_when is not None and done % eval_every == 0 and done < steps:
                tick = time.perf_counter()
                reached = _held_out(task, program, data)
                eval_seconds += time.perf_counter() - tick
                evaluations.append((done, reached))
                if stop_when(reached):
                    metric = reached
                    break
            if done == steps:
                break
    bar.close()
    if metric is None:
        tick = time.perf_counter()
        metric = _held_out(task, program, data)
        eval_seconds += time.perf_counter() - tick
        if stop_when is not None:
            evaluations.append((done, metric))
    seconds = time.perf_counter() - start
    return TrainResult(losses[:done], metric, seconds, tuple(evaluations),
                       eval_seconds if stop_when is not None else 0.0, first_step)


def build_program(task: Task, cfg, backend: str, variant: str | None, dtype: str, device: str,
                  precision: str = STRICT, seed: int | None = None):
    """The `Program` `train` trains: `cfg`'s model from `init_params(spec, seed)`."""
    spec = task.model(cfg)
    be = impls.load(backend)
    variant = variant or be.variants[0]
    if variant not in be.variants:
        raise impls.BackendError(f"unknown variant {variant!r} for {backend}; "
                                 f"choose from {', '.join(be.variants)}")
    return be.build(spec, init_params(spec, cfg.seed if seed is None else seed),
                    variant=variant, dtype=dtype, device=device,
                    optimizer=OptimizerSpec(cfg.optimizer, cfg.lr), precision=precision)


def curve_summary(losses: np.ndarray, points: int = 6) -> str:
    """Mean loss over windows at evenly spaced points of training."""
    n = len(losses)
    window = max(1, n // 20)
    marks = np.linspace(0, n - window, points).astype(int)
    return "  ".join(f"step {m + window}: {losses[m:m + window].mean():.4g}" for m in marks)


