"""The `nnparity gradcheck` command: agreement of every backend with the float64 reference.

Plans the configurations (bench/agreement/gradcheck.py), prints first what will
not be checked, then one line per configuration as it finishes (worst tensor,
kink flips) under the progress display, and a summary line naming what was not
checked; `--json` keeps every tensor. Exit 1 on any disagreement, and on any
requested backend that cannot run (not installed) or explicitly requested
device it lacks, unless `--allow-missing`: a gate must not pass by checking
less than it was asked to. With `--jobs N` lines print as configurations
finish, and the summary, the exit code and `--json` (in plan order) are the
same as serially.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import impls
from bench.agreement.gradcheck import config_line, plan, run_all, write_json
from bench.commands.common import check_out_file
from bench.options import (
    add_list_option,
    add_task_options,
    choice_list,
    non_negative_int,
    positive_int,
)
from bench.progress import ProgressLine
from tasks.optim import OPTIMIZERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_options(parser, many=True)
    add_list_option(parser, "backends", f"comma list of {', '.join(impls.BACKENDS)}")
    add_list_option(parser, "variants", "only these variants (comma list)")
    add_list_option(parser, "dtypes", "comma list of float32, float64 (default float64)")
    add_list_option(parser, "devices", "comma list of cpu, cuda (default: every available)")
    parser.add_argument("--steps", type=non_negative_int, default=0,
                        help="also compare N-step optimiser trajectories (SGD and Adam)")
    add_list_option(parser, "optimizers",
                    f"for --steps: comma list of {', '.join(OPTIMIZERS)} (default all)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for every framework")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="worker processes that check configurations in parallel "
                             "(default 1: this process)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every row as JSON")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 even when a requested backend or device cannot run "
                             "(it is still named in the summary)")


def main(args: argparse.Namespace) -> int:
    from impls.threads import configure

    configure(args.threads)
    check_out_file(args.json, "--json")  # before the checks run, not after
    optimizers = choice_list(args.optimizers, OPTIMIZERS, "optimizer")
    configs, preset = plan(args)
    print(f"{'':>7} {'configuration':<36} {'backend':<10} {'variant':<11} {'dtype':<8} {'dev':<5} "
          f"{'status':<7} worst tensor (normwise relative error <= tolerance)")
    todo = [c for c in configs if c.status not in ("skipped", "missing")]
    for cfg in configs:  # what will not be checked, named first
        if cfg not in todo:
            print(f"{'-':>7} {config_line(cfg)}", flush=True)
    # each line prints as its check finishes, led by the counts, elapsed time and ETA
    # (a live bar below them on a terminal): the progress display
    checks = run_all(todo, preset, args.steps, optimizers, args.jobs, args.threads)
    with ProgressLine(len(todo), "gradcheck", stream=sys.stdout) as progress:
        for cfg in checks:
            progress.advance(config_line(cfg))
    bad = [c for c in configs if c.status in ("FAIL", "error")]
    missing = [c for c in configs if c.status == "missing"]
    skipped = len(configs) - len(todo) - len(missing)
    checked = len(todo) - len(bad)
    line = f"\n{checked} of {len(todo)} configurations agree"
    if missing:
        named = ", ".join(f"{c.backend}" + (f" {c.device}" if c.device != "*" else "")
                          + f" ({c.reason})" for c in missing)
        line += (f"; NOT CHECKED: {named}"
                 + (" (allowed by --allow-missing)" if args.allow_missing else
                    " (exit 1; --allow-missing to accept)"))
    if skipped:
        line += f"; {skipped} skipped"
    print(line)
    if args.json:
        write_json(Path(args.json), configs, preset)
    return 1 if bad or (missing and not args.allow_missing) else 0
