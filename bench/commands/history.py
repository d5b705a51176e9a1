"""The `nnparity history [--add RUN]` command: append a run's cells to the history CSV,
each flagged against its machine's baseline (or `--against`) by the rule every judging
command shares (bench/commands/common.py: a bad `--factor` is refused before anything
is read or written), then plot each cell's timing over commits
(bench/regress/history.py). Exit 0 ok, 2 bad input (history left untouched).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands.common import add_rule_options, check_rule_arguments
from bench.regress.baseline import find_baseline
from bench.regress.compare import compare_runs
from bench.regress.history import append_history, plot_history, read_history
from bench.results.machines import runs_by_machine
from bench.results.paths import BASELINES, HISTORY_FILE, HISTORY_PLOTS
from bench.results.read import LoadError, load_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--add", metavar="RUN", help="first append this run's cells")
    parser.add_argument("--against", metavar="BASELINE",
                        help="flag the added run against this run/file (default: the "
                             "committed baseline of its machine, when one exists)")
    add_rule_options(parser)  # the rule compare uses, checked the same way
    parser.add_argument("--file", type=Path, default=HISTORY_FILE,
                        help=f"history CSV (default {HISTORY_FILE})")
    parser.add_argument("--plots", type=Path, default=HISTORY_PLOTS,
                        help=f"where the PNGs go (default {HISTORY_PLOTS})")
    parser.add_argument("--machine", help="machine fingerprint to plot (default: the latest)")
    parser.add_argument("--no-plot", action="store_true", help="only append, draw nothing")


def main(args: argparse.Namespace) -> int:
    """`nnparity history [--add RUN]`: 0 ok, 2 bad input (history left untouched)."""
    check_rule_arguments(args)
    try:
        if args.add:
            # each machine's rows carry that machine (a Ray run may span several)
            runs = list(runs_by_machine(args.add).values())
            against = runs_by_machine(args.against) if args.against else None
            flags: list[dict[str, str]] = []
            for run in runs:
                fp = run.attrs["run"].fingerprint
                if against is not None:  # that machine's cells, else the one machine given
                    base = against.get(fp) if len(against) > 1 else next(iter(against.values()))
                else:
                    found = find_baseline(run, BASELINES)
                    base = load_run(found) if found is not None else None
                mine: dict[str, str] = {}
                if base is not None:
                    cmp = compare_runs(base, run, args.factor, args.alpha, args.confidence,
                                       args.noise)
                    mine = dict(zip(cmp.table["cell"], cmp.table["verdict"], strict=True))
                flags.append(mine)
            n = append_history(runs, args.file, flags)
            n_bad = sum(v == "regression" for f in flags for v in f.values())
            flagged = any(flags)
            print(f"{args.file}: {n} rows added" + (
                f" from {len(runs)} machines" if len(runs) > 1 else "") + (
                f", flagged against {args.against or 'the machine baseline'} "
                f"({n_bad} regressions)" if flagged else
                " (no baseline for this machine: nothing flagged)"))
        history = read_history(args.file)
    except LoadError as exc:
        print(f"nnparity history: error: {exc}", file=sys.stderr)
        return 2
    if args.no_plot:
        return 0
    if history.empty:
        print(f"{args.file}: no history yet (add a run with --add RUN)")
        return 0
    if args.machine and args.machine not in set(history["machine"]):
        print(f"nnparity history: error: --machine {args.machine}: not in {args.file} "
              f"(known: {', '.join(sorted(set(history['machine'])))})", file=sys.stderr)
        return 2
    for path in plot_history(history, args.plots, args.machine):
        print(path)
    return 0
