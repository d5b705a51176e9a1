"""The `nnparity train` command: train one task on one backend, show progress and the
held-out metric (the loop is bench/training/train.py). It does not time anything for
the benchmark (that is `nnparity run`).
"""

from __future__ import annotations

import argparse

import impls
from bench.options import add_task_options, dtype_choice, knob_overrides, positive_int
from bench.training.train import curve_summary, train
from tasks import get_task


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


def main(args: argparse.Namespace) -> int:
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
