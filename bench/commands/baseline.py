"""The `nnparity baseline update|check|github` command: this machine's committed baseline.

`update RUN` merges a run's cells into `results/baselines/<fingerprint>.json`, one
file per machine the run spans; `check RUN` compares a run with the baseline of its
own machine (by the rule every judging command shares, bench/commands/common.py),
or says that none exists (what `nox -s bench` calls); `github RUN --out FILE`
writes the JSON that github-action-benchmark reads. The library is
bench/regress/baseline.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench.commands.common import add_rule_arguments, check_out_file, check_rule_arguments
from bench.regress.baseline import (
    baseline_age,
    find_baseline,
    update_baseline,
    write_github_benchmark,
)
from bench.regress.compare import compare_runs, emit
from bench.results.machines import runs_by_machine
from bench.results.paths import BASELINES
from bench.results.read import LoadError, load_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="baseline_action", required=True, metavar="ACTION",
                                    parser_class=type(parser))
    update = actions.add_parser("update", help="merge a run into its machine's committed baseline")
    check = actions.add_parser("check", help="compare a run with its machine's baseline, if any")
    github = actions.add_parser("github", help="write github-action-benchmark JSON for a run")
    for sub in (update, check, github):
        sub.add_argument("run", help="run directory or results JSON")
    for sub in (update, check):
        sub.add_argument("--dir", type=Path, default=BASELINES,
                         help=f"baselines directory (default {BASELINES})")
    add_rule_arguments(check)
    github.add_argument("--out", required=True, metavar="FILE", help="where to write the JSON")


def main(args: argparse.Namespace) -> int:
    """`nnparity baseline update|check|github`: 0 ok, 1 regression (check), 2 bad input."""
    prog = f"nnparity baseline {args.baseline_action}"
    if args.baseline_action == "check":
        check_rule_arguments(args)
    if args.baseline_action == "github":
        check_out_file(args.out)
    try:
        if args.baseline_action == "update":
            tuned = {b: v for b, v in (load_run(args.run).attrs.get("settings") or {}).items()
                     if b != "source" and v != "default"}
            if tuned:  # a baseline is what users get by default; a tuned run would make
                # every later default run of those frameworks look like a regression
                shown = ", ".join(f"{b} {v}" for b, v in sorted(tuned.items()))
                print(f"{prog}: error: {args.run} is a tuned run ({shown}); a baseline holds "
                      "default runs (compare a tuned run with `nnparity compare`)",
                      file=sys.stderr)
                return 2
            # each machine's cells into its own baseline (a Ray run may span several)
            for run in runs_by_machine(args.run).values():
                path, updated, kept = update_baseline(run, args.dir)
                print(f"{path}: {updated} cells from {args.run}, {kept} kept from before")
            return 0
        if args.baseline_action == "check":
            runs = runs_by_machine(args.run)
            if len(runs) > 1:
                return max(_check(run, args) for run in runs.values())
        run = load_run(args.run)
        if args.baseline_action == "github":
            n = write_github_benchmark(run, args.out)
            print(f"{args.out}: {n} benchmarks (customSmallerIsBetter)")
            return 0
        return _check(run, args)
    except LoadError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def _check(run: pd.DataFrame, args: argparse.Namespace) -> int:
    """Compare one machine's cells with that machine's baseline, if one exists."""
    path = find_baseline(run, args.dir)
    if path is None:
        fp = run.attrs["run"].fingerprint
        print(f"no baseline for machine {fp} in {args.dir}: not compared "
              f"(create one with `nnparity baseline update {args.run}`)")
        return 0
    print(f"comparing with the baseline of this machine: {path}", file=sys.stderr)
    base = load_run(path)
    print(baseline_age(path), file=sys.stderr)
    return emit(compare_runs(base, run, args.factor, args.alpha, args.confidence, args.noise),
                args)
