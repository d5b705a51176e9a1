"""The command-line reference, docs/cli.md, generated from `bench.cli.build_parser()`.

    python -m bench.clidoc > docs/cli.md

Written from the parser's own actions (not from argparse's help text, whose
layout follows the terminal's width and the Python version), so the reference
cannot drift from the options: tests/test_clidoc.py fails when docs/cli.md
differs from what this prints. Imports every command module (as `build_parser`
does), never a framework.
"""

from __future__ import annotations

import argparse
import sys

from bench.cli import COMMANDS, build_parser
from bench.results.paths import ROOT

HEADER = """\
# nnparity command-line reference

Generated from the parser by `python -m bench.clidoc > docs/cli.md`; do not edit
by hand (tests/test_clidoc.py fails when this file and the parser differ).
`nnparity COMMAND --help` prints the same options. Options that take a list are
plural, take comma lists and may be repeated; the singular spelling is an alias
(`--tasks a,b` = `--task a --task b`). Abbreviated options are rejected. Exit
codes: 0 success, 1 a check failed, 2 bad usage or input (one line).
"""


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Command name -> its parser, in the order of `bench.cli.COMMANDS`."""
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def portable(text: object) -> str:
    """`text` without what differs by machine: the checkout's path (defaults under it
    are shown relative to it) and this interpreter's path."""
    text = str(text).replace(sys.executable, "python3")
    return text.replace(f"{ROOT}/", "").replace(str(ROOT), ".")


def _cell(text: object) -> str:
    return " ".join(portable(text).split()).replace("|", "\\|")


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        name = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.choices:
        name = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        name = action.dest.upper()
    return name + (" ..." if action.nargs in ("+", "*") else "")


def _default(action: argparse.Action) -> str:
    value = action.default
    if action.nargs == 0 or value in (None, [], "", argparse.SUPPRESS):
        return ""
    return f"`{portable(value)}`"


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    words = [f"nnparity {name}"]
    for action in parser._actions:
        if not action.option_strings and action.dest != "help":
            value = _value(action)
            words.append(f"[{value}]" if action.nargs == "?" else value)
    required = [a for a in parser._actions if a.option_strings and a.required]
    words += [f"{a.option_strings[0]} {_value(a)}".strip() for a in required]
    return " ".join(words) + " [options]"


def command_section(name: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## `nnparity {name}`", "", _cell(parser.description or ""), "",
             f"    {_synopsis(name, parser)}", ""]
    rows = [a for a in parser._actions if a.dest != "help"]
    if rows:
        lines += ["| option | value | default | meaning |", "|---|---|---|---|"]
        for action in rows:
            if action.option_strings:
                names, value = ", ".join(f"`{o}`" for o in action.option_strings), _value(action)
            else:  # a positional: its name is its value
                names, value = f"`{_value(action)}`", ""
            # as `--help` prints it: argparse expands %(default)s, %(prog)s and %% in help
            meaning = parser._get_formatter()._expand_help(action) if action.help else ""
            if action.choices and action.metavar is not None:
                meaning += f" (one of {', '.join(map(str, action.choices))})"
            if action.option_strings and action.required:
                meaning += " (required)"
            lines.append(f"| {names} | {_cell(value)} | {_default(action)} | "
                         f"{_cell(meaning.strip())} |")
        lines.append("")
    return "\n".join(lines)


def generate() -> str:
    parser = build_parser()
    commands = subparsers(parser)
    index = ["| command | what it does |", "|---|---|"]
    index += [f"| [`{name}`](#nnparity-{name}) | {_cell(text)} |"
              for name, _, text in COMMANDS if name in commands]
    sections = [command_section(name, commands[name]) for name, _, _ in COMMANDS
                if name in commands]
    return "\n".join([HEADER, *index, "", *sections]).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate())
