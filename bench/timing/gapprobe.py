"""Variant gaps measured in one process: `python -m bench.timing.gapprobe --backend B --task T`.

Times one phase (`forward`, `backward` = loss and gradients, or `step`) of
several variants of one backend on one task config, on the CPU in float32,
in the same process, in interleaved rounds with a rotating order, each round
a median of `--calls` calls (after `--warmup` untimed calls per variant), the
way `bench.timing.idiomatic` times variants against scripts. It prints each
variant's median and its ratio to the first variant named: the median of the
per-round ratios and their range, and the same from each round's fastest call
(on a busy machine the fastest call is the one least disturbed by the
neighbours). Only these in-process ratios mean anything on a loaded machine;
the absolute times move with the neighbours.

This is how the variant gaps of docs/design.md §5 (Known gaps between
variants) were measured, e.g.

    python -m bench.timing.gapprobe --backend tensorflow --task rnn_sequence \\
        --knob cell=lstm --phase forward --variants xla,function,keras_layers --batch 1

`--batch N` times a batch of N rows instead of the config's main batch size
(batch 1 leaves mostly per-op dispatch). A benchmark script, not a test: the
suite runs it only at the tiny preset; it writes nothing. Exit 0, or 2 with
one line on bad input.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from bench.options import InputError, positive_int

PHASES = ("forward", "backward", "step")


def _calls(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """[(variant, synchronised call)] for the variants asked, in that order."""
    import impls
    from bench.timing import measure
    from tasks import get_task
    from tasks.optim import OptimizerSpec
    from tasks.params import init_params

    task = get_task(args.task)
    cfg = task.config(args.preset, dict(args.knobs))
    spec = task.model(cfg)
    params = init_params(spec, cfg.seed)
    x, y = task.data(cfg).batch(0, args.batch or cfg.batch_size)
    be = impls.load(args.backend)
    out = []
    for variant in args.variants:
        if variant not in be.variants or not be.supports(spec, variant):
            raise InputError(f"{args.backend} has no variant {variant!r} for {args.task}; "
                             f"choose from {', '.join(be.variants)}")
        program = be.build(spec, params, variant=variant, dtype="float32", device="cpu",
                           optimizer=OptimizerSpec(cfg.optimizer, cfg.lr))
        xd, yd = program.put(x), program.put(y)
        if args.phase == "forward":
            call = measure.synced(program, program.forward, xd)
        elif args.phase == "backward":
            call = measure.synced(program, program.loss_and_grads, xd, yd)
        else:
            call = measure.synced(program, program.step, xd, yd)
        out.append((variant, call))
    return out


def probe(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-variant round medians and round minimums (seconds), timed interleaved in
    this process."""
    calls = _calls(args)
    for _, call in calls:
        for _ in range(args.warmup):
            call()
    rounds: dict[str, list[float]] = {name: [] for name, _ in calls}
    fastest: dict[str, list[float]] = {name: [] for name, _ in calls}
    for r in range(args.rounds):
        shift = r % len(calls)  # rotate so no variant is always first
        for name, call in calls[shift:] + calls[:shift]:
            times = []
            for _ in range(args.calls):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            rounds[name].append(statistics.median(times))
            fastest[name].append(min(times))
    return rounds, fastest


def _ratios(per_round: dict[str, list[float]], name: str, base: str) -> list[float]:
    return [a / b for a, b in zip(per_round[name], per_round[base], strict=True)]


def table(rounds: dict[str, list[float]], fastest: dict[str, list[float]] | None = None) -> str:
    """Median per variant and its ratio to the first one (median and range of the
    per-round ratios), and with `fastest` the same from each round's fastest call."""
    names = list(rounds)
    head = f"| variant | median ms | vs {names[0]} | per-round range |"
    rule = "|---|---|---|---|"
    if fastest is not None:
        head += f" fastest ms | vs {names[0]} | per-round range |"
        rule += "---|---|---|"
    lines = [head, rule]
    for name in names:
        parts = [(rounds, _ratios(rounds, name, names[0]))]
        if fastest is not None:
            parts.append((fastest, _ratios(fastest, name, names[0])))
        row = f"| {name} |"
        for per_round, ratios in parts:
            row += (f" {statistics.median(per_round[name]) * 1e3:.3f} | "
                    f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f} |")
        lines.append(row)
    return "\n".join(lines)


def _knob(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"a knob is KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timing.gapprobe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--knob", dest="knobs", type=_knob, action="append", default=[],
                        help="a task knob KEY=VALUE (repeatable), e.g. cell=gru")
    parser.add_argument("--preset", default="standard",
                        choices=("tiny", "quick", "standard", "large"))
    parser.add_argument("--phase", default="forward", choices=PHASES)
    parser.add_argument("--variants", required=True, help="comma list; ratios are to the first")
    parser.add_argument("--batch", type=positive_int, default=None,
                        help="rows per batch (default: the config's main batch size)")
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--calls", type=positive_int, default=15)
    parser.add_argument("--warmup", type=positive_int, default=10)
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="intra-op threads, set before the framework loads")
    args = parser.parse_args(argv)
    try:
        import impls
        from tasks import TASKS

        if args.backend not in impls.BACKENDS:
            raise InputError(f"unknown backend {args.backend!r}; "
                             f"choose from {', '.join(impls.BACKENDS)}")
        if args.task not in TASKS:
            raise InputError(f"unknown task {args.task!r}; choose from {', '.join(TASKS)}")
        args.variants = [v for v in args.variants.split(",") if v]
        if not args.variants:
            raise InputError("--variants names no variant")
        from impls.threads import configure

        configure(args.threads)
        rounds, fastest = probe(args)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    knobs = ",".join(f"{k}={v}" for k, v in args.knobs)
    print(f"{args.backend} {args.task}[{knobs}] {args.preset} {args.phase}, cpu float32, "
          f"batch {args.batch or 'main'}, {args.rounds} interleaved rounds x {args.calls} calls "
          "in one process (only the ratios are meaningful on a loaded machine)")
    print(table(rounds, fastest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
