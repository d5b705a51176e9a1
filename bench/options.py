"""Shared command-line options: comma lists with validation, task knobs.

Every subcommand parses tasks, backends, dtypes and `--set KEY=VALUE` knobs
the same way, and reports a bad value as one line naming the valid choices.
Must not import a framework.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence

from impls import BACKENDS, DTYPES
from impls.base import DEVICES as DEVICES  # the one definition; commands take it from here
from tasks import PRESETS, TASKS, TaskError
from tasks.base import SEED_MAX  # what numpy.random.default_rng and every framework accept


class InputError(Exception):
    """Bad input to a command (an option, a file, a revision): `bench.cli` prints it
    as one line and exits 2. Every bad-input error of `bench` derives from it; the
    layers below (`tasks.spec.SpecError`, `impls.BackendError`) cannot import
    `bench`, so the CLI catches those two beside it."""


class OutputError(InputError):
    """A file or directory a command must write cannot be written (a directory where a
    file goes, a read-only or full disk, /proc): one line naming the path, exit 2."""


# -- numeric options: one converter per kind, used by every command -----------------------
# argparse calls these on the raw string; a bad value becomes argparse's one-line error
# (exit 2). NaN and infinities are refused everywhere: NaN compares false with every
# bound, so a guard like `timeout <= 0` would let it through and switch the guard off.


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type=` for an integer in [low, high]."""

    def convert(text: str) -> int:
        value = int(_number(text, int))
        if value < low or (high is not None and value > high):
            what = (f"an integer between {low} and {high}" if high is not None
                    else "a positive integer" if low == 1 else f"an integer of at least {low}")
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    convert.__name__ = "integer"  # argparse names the type in its message
    return convert


def positive_float(text: str) -> float:
    """An argparse `type=` for a finite number > 0 (seconds, budgets, factors)."""
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def finite_float(text: str) -> float:
    """An argparse `type=` for any finite number (the command checks its own range)."""
    return float(_number(text, float))


positive_int = int_range(1)
non_negative_int = int_range(0)
seed_int = int_range(0, SEED_MAX)


def choice_list(value: str | Sequence[str] | None, choices: Iterable[str], what: str,
                default: Sequence[str] | None = None) -> list[str]:
    """Split a comma list (or a list of comma lists) and check every item."""
    choices = tuple(choices)
    if value is None or value == []:
        return list(default if default is not None else choices)
    parts = [value] if isinstance(value, str) else list(value)
    items = [item.strip() for part in parts for item in part.split(",") if item.strip()]
    for item in items:
        if item not in choices:
            raise TaskError(f"unknown {what} {item!r}; choose from {', '.join(choices)}")
    if not items:
        raise TaskError(f"empty {what} list; choose from {', '.join(choices)}")
    return list(dict.fromkeys(items))


def add_list_option(parser: argparse.ArgumentParser, plural: str, help: str) -> None:
    """A list option: `--<plural>` takes a comma list and may be repeated, and its
    singular spelling is an alias (`--tasks a,b`, `--task a --task b`). Parse the
    value with `choice_list`."""
    singular = plural.removesuffix("s")
    parser.add_argument(f"--{plural}", f"--{singular}", dest=plural.replace("-", "_"),
                        action="append", metavar=singular.upper(), help=help)


def add_task_options(parser: argparse.ArgumentParser, *, many: bool) -> None:
    """--task(s), --preset, --cell, --set KEY=VALUE."""
    if many:
        add_list_option(parser, "tasks", f"comma list of {', '.join(TASKS)}")
    else:
        parser.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)}")
    parser.add_argument("--cell", default=None, help="recurrent cell: rnn, lstm or gru")
    parser.add_argument("--set", dest="knobs", action="append", default=[], metavar="KEY=VALUE",
                        help="override a task knob, e.g. --set hidden=64 (repeatable)")


def knob_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The `--set` and `--cell` overrides as a dict of raw strings."""
    overrides: dict[str, str] = {}
    for item in args.knobs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TaskError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    if getattr(args, "cell", None):
        overrides["cell"] = args.cell
    return overrides


def task_overrides(task_name: str, overrides: dict[str, str]) -> dict[str, str]:
    """The subset of `overrides` that `task_name` has as knobs (e.g. `cell` only for RNNs)."""
    knobs = TASKS[task_name].knobs()
    return {k: v for k, v in overrides.items() if k in knobs}


def check_overrides_known(task_names: Sequence[str], overrides: dict[str, str]) -> None:
    """Every override must be a knob of at least one selected task."""
    known = {k for name in task_names for k in TASKS[name].knobs()}
    for key in overrides:
        if key not in known:
            raise TaskError(f"unknown knob {key!r}; choose from {', '.join(sorted(known))}")


def backend_list(value) -> list[str]:
    return choice_list(value, BACKENDS, "backend")


def dtype_choice(value: str) -> str:
    return choice_list(value, DTYPES, "dtype")[0]
