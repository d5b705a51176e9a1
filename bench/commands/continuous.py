"""The `nnparity continuous BASE [HEAD]` command: A/B-time two git revisions (or, with
`--framework A,B`, two versions of one framework) in one job, then compare them by the
rule every judging command shares (bench/commands/common.py). The method (interleaved
rounds in temporary worktrees, the confirmation of flagged cells) is
bench/regress/continuous.py. Exit 0 no regression, 1 a regression (or the head's run
failed its checks), 2 a bad ref, bad input or a failed run; every bad input is found
before any worktree, venv or run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from bench.commands.common import add_rule_arguments, check_rule_arguments
from bench.options import InputError, non_negative_int, positive_int
from bench.regress.continuous import continuous


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE_REF", nargs="?",
                        help="baseline revision (e.g. HEAD~1, main); with --framework, the "
                             "one revision both sides run (default HEAD)")
    parser.add_argument("head", metavar="HEAD_REF", nargs="?",
                        help="revision under test (default HEAD; uncommitted changes are "
                             "not included)")
    parser.add_argument("--framework", metavar="A,B",
                        help="instead of two revisions, two versions of one framework, e.g. "
                             "numpy==2.3.5,numpy==2.4.6: each side runs in its own venv "
                             "(python -m venv + pip install from PyPI), timing that backend")
    parser.add_argument("--venv-cache", default="~/.cache/nnparity/venvs", metavar="DIR",
                        help="where --framework keeps (and reuses) its virtual environments")
    parser.add_argument("--repeat", type=positive_int, default=2,
                        help="interleaved rounds per side: base, head, base, head ... (default 2)")
    parser.add_argument("--confirm", type=non_negative_int, default=5, metavar="N",
                        help="re-time the cells the first pass flags in N more interleaved "
                             "rounds per side; a verdict stands only if it repeats "
                             "(default 5; 0 turns the confirmation off)")
    parser.add_argument("--confirm-only", choices=("both", "regressions"), default="both",
                        help="which screen verdicts the confirmation re-times (default both; "
                             "with regressions, unconfirmed improvements count as unchanged)")
    parser.add_argument("--preset", default="quick", help="preset for both sides (default quick)")
    parser.add_argument("--run-args", default="", metavar="ARGS",
                        help="extra arguments for `nnparity run`, one quoted string, e.g. "
                             "\"--tasks mlp_regression --backends numpy torch\"")
    parser.add_argument("--head-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment only for the head side's runs (e.g. a test delay)")
    parser.add_argument("--repo", help="the git repository (default: the one around the cwd)")
    parser.add_argument("--keep", metavar="DIR", help="keep the raw results under DIR")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs the harness (default: this one)")
    add_rule_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """`nnparity continuous`: 0 no regression, 1 regression, 2 bad ref or failed run."""
    check_rule_arguments(args)
    if args.framework:
        if args.head is not None:
            raise InputError("--framework times one revision: give at most BASE_REF")
    elif args.base is None:
        raise InputError("give BASE_REF (and optionally HEAD_REF), or --framework A,B")
    args.head = args.head or "HEAD"
    check_paths(args)
    return continuous(args)


def check_paths(args: argparse.Namespace) -> None:
    """Bad input found before any worktree, venv or run: one line each."""
    try:
        shlex.split(args.run_args)
    except ValueError as exc:
        raise InputError(f"--run-args {args.run_args!r}: {exc}") from None
    if args.keep is not None:
        keep = Path(args.keep)
        if not args.keep or (keep.exists() and not keep.is_dir()):
            raise InputError(f"--keep {args.keep!r}: not a directory")
    python = shutil.which(args.python) if os.sep not in args.python else args.python
    if not python or not Path(python).is_file() or not os.access(python, os.X_OK):
        raise InputError(f"--python {args.python}: not an executable file")
