"""The `nnparity validate RUN_DIR` command: check a run (or one results file) against the
results format (docs/results-format.md).

Prints one line per problem (bench/results/check.py, bench/results/validate.py);
exit 0 when every file is valid, 1 otherwise, 2 when there is nothing to check.
A file recorded from a modified tree (its commit ends in `+dirty`) is valid but
warned about on stderr: its numbers belong to no commit. It changes no file and
imports no framework.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.results.check import check_file, files_of
from bench.results.schema import FORMAT_VERSION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory (every *.json below it) or one results file")


def main(args: argparse.Namespace) -> int:
    """0: every file valid; 1: a problem (one line each on stdout); 2: nothing to check."""
    files = files_of(Path(args.run_dir))
    found: list[str] = []
    versions: set[int] = set()
    dirty: list[str] = []
    for file in files:
        lines, version, commit = check_file(file)
        found += lines
        if not lines:
            versions.add(version or 0)
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
