"""`nnparity` command line: one dispatcher over the subcommand modules.

Each subcommand lives in its own module of bench/commands/ exposing
`add_arguments(parser)` and `main(args) -> int` (the study and race commands in
their own packages); this file only wires them and turns bad input into exit
code 2 with one line on stderr (never a traceback). Exit codes: 0 success,
1 a check failed, 2 bad usage or input. Must not import a framework.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.options import InputError
from impls import BackendError
from tasks.spec import SpecError

# (command, module, help); modules are imported lazily when their command runs
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("list", "bench.commands.list", "tasks, presets, backends (installed?), variants, devices"),
    ("gradcheck", "bench.commands.gradcheck",
     "prove every backend computes the reference's gradients"),
    ("export", "bench.commands.export",
     "write a task's parameters, batch and reference gradients to .npz"),
    ("train", "bench.commands.train", "train a task on one backend and report the held-out metric"),
    ("run", "bench.commands.run", "time the benchmark matrix into a raw results directory"),
    ("report", "bench.commands.report", "write REPORT.md and figures for a run directory"),
    ("compare", "bench.commands.compare",
     "compare two runs; exit 1 on a significant regression"),
    ("continuous", "bench.commands.continuous",
     "A/B-time two git revisions in one job and compare"),
    ("validate", "bench.commands.validate", "check a run's raw results against the results format"),
    ("baseline", "bench.commands.baseline", "manage committed per-machine baselines"),
    ("history", "bench.commands.history", "plot each cell's timing over commits"),
    ("study", "bench.commands.study",
     "gradient flow through time and depth, and learning, measured in every backend"),
    ("race", "bench.commands.race",
     "time to a trained model: every backend to the same held-out target, same start"),
    ("settings", "bench.commands.settings",
     "every speed setting toggled alone: speed-up over the default and agreement"),
)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        # no prefix matching: `--dtype` must mean an option that exists, not one it begins
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, not argparse's usage block
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnparity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module, help_text in COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # command not available in this checkout
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except (InputError, SpecError, BackendError) as exc:
        # one line whatever the message quotes (a results file's text may hold newlines)
        message = " ".join(str(exc).splitlines())
        sys.stderr.write(f"nnparity {args.command}: error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
