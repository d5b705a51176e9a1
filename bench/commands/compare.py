"""The `nnparity compare` command: options, and the choice between one machine's
comparison (`compare.compare_runs`) and a cell-by-machine one (`by_machine`).

The rule's options and the report's format are the ones every judging command
shares (bench/commands/common.py). Reads only; writes nothing but the report file
asked for.
"""

from __future__ import annotations

import argparse

from bench.commands.common import add_rule_arguments, check_rule_arguments
from bench.regress.by_machine import compare_by_machine, spans_machines
from bench.regress.compare import compare_runs, emit
from bench.results.read import load_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", help="baseline run directory or results JSON")
    parser.add_argument("current", help="current run directory or results JSON")
    add_rule_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """`nnparity compare`: 0 no regression, 1 regression (or cells the baseline timed
    missing or errored, unless --allow-missing), 2 bad input."""
    check_rule_arguments(args)
    if spans_machines(args.baseline, args.current):  # cells matched within each machine
        return emit(compare_by_machine(args.baseline, args.current, args.factor, args.alpha,
                                       args.confidence, args.noise), args)
    base, current = load_run(args.baseline), load_run(args.current)
    return emit(compare_runs(base, current, args.factor, args.alpha, args.confidence,
                             args.noise), args)
