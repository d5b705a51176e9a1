"""`nnparity train`: train one task on one backend, show progress and the held-out metric.

The same loop drives every backend: canonical parameters from the task's
seed, shuffled batches from a seeded generator, `Program.step` per batch. It
prints a progress bar on stderr, a loss-curve summary and the test metric.
It does not time anything for the benchmark (see `bench.timing.runner`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import impls
from bench.options import add_task_options, dtype_choice, knob_overrides, positive_int
from bench.progress import ProgressLine
from impls.base import STRICT
from tasks import get_task
from tasks.base import Task
from tasks.optim import OptimizerSpec
from tasks.params import init_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_options(parser, many=False)
    parser.add_argument("--backend", default="numpy", help=", ".join(impls.BACKENDS))
    parser.add_argument("--variant", default=None,
                        help="execution variant (default: the backend's first)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="optimiser steps (default: the preset's)")
    parser.add_argument("--dtype", default="float32", help="float32 or float64")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for every framework")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


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


def main(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads <= 0:
        raise impls.BackendError(f"--threads must be a positive integer, got {args.threads}")
    from impls.threads import configure

    configure(args.threads)
    task = get_task(args.task)
    cfg = task.config(args.preset or "quick", knob_overrides(args))
    steps = args.steps if args.steps is not None else cfg.steps
    if steps <= 0:
        raise impls.BackendError(f"--steps must be a positive integer, got {steps}")
    dtype = dtype_choice(args.dtype)
    if args.backend not in impls.BACKENDS:
        raise impls.BackendError(f"unknown backend {args.backend!r}; "
                                 f"choose from {', '.join(impls.BACKENDS)}")
    print(f"training {task.name} ({args.preset or 'quick'}) on {args.backend} {dtype} "
          f"{args.device}: {steps} {cfg.optimizer} steps, batch {cfg.batch_size}")
    result = train(task, cfg, args.backend, args.variant, dtype, args.device, steps,
                   progress=not args.quiet)
    print(f"loss curve: {curve_summary(result.losses)}")
    print(f"held-out {task.metric_label(cfg)}: {result.metric:.4f}  ({result.seconds:.1f}s)")
    return 0
