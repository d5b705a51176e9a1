"""`nnparity study`: the gradient-flow study's options, checks and output lines.

Parses and validates the options, then calls the library (`bench.study.run`
schedules and writes the raw data, `bench.study.report` rebuilds REPORT.md and
the figures from it). Imports no framework.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import impls
from bench.options import InputError, add_list_option, backend_list
from bench.progress import ProgressLine
from bench.study.config import PRESETS, study_config
from bench.study.report import write_report
from bench.study.run import DEFAULT_OUT, JOURNAL, RAW, Journal, execute, plan_cost, write_raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default", help=f"one of {', '.join(PRESETS)}")
    parser.add_argument("--out", default=None, help=f"output directory (default {DEFAULT_OUT})")
    add_list_option(parser, "backends",
                    "comma list (default: every installed backend; numpy always runs)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of the adding problem (the longest budget; "
                             "the preset's shorter budgets are kept)")
    parser.add_argument("--train-backend", default=None,
                        help="train every cell on this backend instead of measuring which "
                             "is fastest")
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes, one thread each (default: all cores)")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="only rebuild REPORT.md and figures from DIR/study.json")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def main(args: argparse.Namespace) -> int:
    if args.report is not None:
        path = Path(args.report)
        if not (path / RAW).is_file():
            raise InputError(f"no {RAW} in {path}")
        print(f"report: {write_report(path)}")
        return 0
    cfg = study_config(args.preset, args.seeds, args.steps)
    backends = ["numpy"] + [b for b in backend_list(args.backends)
                            if b != "numpy" and impls.is_installed(b)]
    n_jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if n_jobs <= 0:
        raise InputError(f"--jobs must be a positive integer, got {n_jobs}")
    if args.train_backend is not None and args.train_backend not in backends:
        raise InputError(f"--train-backend {args.train_backend!r} is not among the backends "
                         f"run here ({', '.join(backends)})")
    out = Path(args.out) if args.out else DEFAULT_OUT
    if (out / RAW).exists():
        raise InputError(f"--out {out} already holds a finished study ({RAW}); choose another "
                         f"--out, or rebuild its report with --report {out}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    journal = Journal(out / JOURNAL, {"config": cfg.to_dict(), "backends": backends,
                                      "train_backend": args.train_backend})
    if journal.done:
        print(f"study: resuming in {out}: {len(journal.done)} finished jobs kept "
              f"from an interrupted run", file=sys.stderr)
    from impls.threads import configure

    configure(1 if n_jobs > 1 else None)
    print(f"study ({args.preset}): backends {', '.join(backends)}; {len(cfg.seeds)} seeds; "
          f"budget {cfg.learn_steps} steps; {n_jobs} worker(s)", file=sys.stderr)
    progress = ProgressLine(plan_cost(cfg, backends), "study", enabled=not args.quiet)
    start = time.perf_counter()
    data = execute(cfg, backends, n_jobs, progress, args.train_backend, journal)
    progress.close()
    from bench.timing.environment import nnparity_info

    data["environment"] = {**nnparity_info(1 if n_jobs > 1 else os.cpu_count() or 1),
                           "jobs": n_jobs, "preset": args.preset,
                           "seconds": round(time.perf_counter() - start, 1)}
    write_raw(out, data)
    journal.path.unlink(missing_ok=True)  # study.json now holds every job
    print(f"report: {write_report(out)}  ({data['environment']['seconds']:.0f}s)")
    return 0
