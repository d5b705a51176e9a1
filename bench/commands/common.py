"""Option groups several commands share, each defined once and checked once.

- The regression rule (`--factor/--alpha/--confidence/--noise`), with its defaults from
  `bench.results.stats`: `compare`, `continuous`, `baseline check` and `history` judge
  with it, so a bad value is refused the same way by all four (`history --factor 0.5`
  exits 2 like `compare --factor 0.5`).
- The comparison report's format and output (`--json`/`--markdown`, `--out FILE`,
  `--allow-missing`): `compare`, `continuous` and `baseline check`.
- Output paths, checked before any work: a file (`--out FILE`, `--json PATH`) that can
  clearly not be written, and an empty directory path (`--out ''`), are bad input.

The selections (tasks, backends, dtypes, `--set` knobs) are in bench/options.py,
which the libraries below the commands share too.
"""

from __future__ import annotations

import argparse

from bench.options import InputError, finite_float
from bench.results.stats import ALPHA, CONFIDENCE, FACTOR, NOISE_BAND
from bench.results.write import check_output_file


def add_rule_options(parser: argparse.ArgumentParser) -> None:
    """--factor/--alpha/--confidence/--noise: the rule of every command that judges a
    change; `check_rule_arguments` checks them."""
    parser.add_argument("--factor", type=finite_float, default=FACTOR,
                        help=f"flag only changes beyond this ratio of medians (default {FACTOR})")
    parser.add_argument("--alpha", type=finite_float, default=ALPHA,
                        help=f"family-wise significance level: p-values are Holm-adjusted over "
                             f"the cells compared (default {ALPHA})")
    parser.add_argument("--confidence", type=finite_float, default=CONFIDENCE,
                        help=f"confidence level of each cell's ratio interval "
                             f"(default {CONFIDENCE})")
    parser.add_argument("--noise", type=finite_float, default=NOISE_BAND,
                        help="noise band: a change counts only when its interval lies wholly "
                             f"outside +-NOISE (default {NOISE_BAND:g})")


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """The rule (`add_rule_options`) and the comparison report's format and output."""
    add_rule_options(parser)
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fmt.add_argument("--markdown", action="store_true", help="print Markdown instead")
    parser.add_argument("--out", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 even when cells the baseline timed are missing or errored "
                             "in the current run (they are still listed)")


def check_rule_arguments(args: argparse.Namespace) -> None:
    """Raise `InputError` for a bad --factor/--alpha/--confidence/--noise, or an --out
    (when the command has one) that cannot be written."""
    if not args.factor > 1.0:
        raise InputError(f"--factor {args.factor:g}: must be > 1 (e.g. {FACTOR} for 20%)")
    if not 0.0 < args.alpha < 1.0:
        raise InputError(f"--alpha {args.alpha:g}: must be between 0 and 1 (e.g. {ALPHA})")
    if not 0.0 < args.confidence < 1.0:
        raise InputError(
            f"--confidence {args.confidence:g}: must be between 0 and 1 (e.g. {CONFIDENCE})")
    if not 0.0 <= args.noise < 1.0:
        raise InputError(f"--noise {args.noise:g}: must be between 0 and 1 (e.g. {NOISE_BAND})")
    check_out_file(getattr(args, "out", None))


def check_out_file(path: str | None, option: str = "--out") -> None:
    """A file a command will write (None: not asked for), checked before the work,
    not after it: an empty path, a directory, or a path under no writable directory is
    bad input (exit 2, one line)."""
    if path is None:
        return
    if not path.strip():
        raise InputError(f"{option} '': an empty path")
    check_output_file(path)


def check_out_dir(path: str | None) -> None:
    """A directory a command writes into (None: its default): an empty path is bad input
    rather than the current directory."""
    if path is not None and not path.strip():
        raise InputError("--out '': an empty path (leave --out out for the default)")
