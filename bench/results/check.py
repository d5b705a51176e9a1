"""`nnparity validate RUN_DIR`: check a run (or one results file) against the results format.

Reads every `*.json` below RUN_DIR (or the one file given) and prints one line
per problem found by `bench.results.validate.problems`, plus one for a file that
is not JSON at all; exit 0 when every file is valid, 1 otherwise, 2 when there
is nothing to check. A file recorded from a modified tree (its commit ends in
`+dirty`) is valid but warned about on stderr: its numbers belong to no commit.
It changes no file and imports no framework.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.options import InputError
from bench.results.schema import FORMAT_VERSION
from bench.results.validate import format_version, problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory (every *.json below it) or one results file")


def files_of(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise InputError(f"{path}: no *.json results files in this directory")
        return files
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or directory")


def check_file(file: Path) -> list[str]:
    """The problems of one file, reading included."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"{file}: cannot read ({exc.strerror or exc})"]
    except UnicodeDecodeError:
        return [f"{file}: not UTF-8 text (corrupt?)"]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"{file}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"]
    return problems(doc, str(file))


def main(args: argparse.Namespace) -> int:
    """0: every file valid; 1: a problem (one line each on stdout); 2: nothing to check."""
    files = files_of(Path(args.run_dir))
    found: list[str] = []
    versions: set[int] = set()
    dirty: list[str] = []
    for file in files:
        lines = check_file(file)
        found += lines
        if not lines:
            doc = json.loads(file.read_text(encoding="utf-8"))
            versions.add(format_version(doc) or 0)
            commit = _commit(doc)
            if commit.endswith("+dirty"):
                dirty.append(f"{file} ({commit.removesuffix('+dirty')[:10]}+dirty)")
    if dirty:
        sys.stderr.write(f"warning: {len(dirty)} file(s) recorded from a modified tree, so "
                         f"their numbers belong to no commit: {', '.join(dirty[:3])}"
                         f"{', ...' if len(dirty) > 3 else ''}\n")
    for line in found:
        print(line)
    if found:
        return 1
    shown = ", ".join(str(v) for v in sorted(versions))
    print(f"{args.run_dir}: {len(files)} file(s) valid (results format version {shown}; "
          f"this checker knows up to {FORMAT_VERSION})")
    return 0


def _commit(doc: object) -> str:
    try:
        commit = doc["machine_info"]["nnparity"].get("git_commit", "")  # type: ignore[index]
    except (KeyError, TypeError, AttributeError):
        return ""
    return commit if isinstance(commit, str) else ""
