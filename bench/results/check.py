"""Checking the files of a run against the results format, reading included: the
library of `nnparity validate` (bench/commands/validate.py).

`files_of` lists every `*.json` below a run directory (or the one file given);
`check_file` reads one through the one reader and returns the problems found by
`bench.results.validate.problems` (one for a file that is not JSON at all), and
for a valid file its format version and the commit it records. It changes no
file and imports no framework.
"""

from __future__ import annotations

from pathlib import Path

from bench.options import InputError
from bench.results.validate import format_version, problems


def files_of(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise InputError(f"{path}: no *.json results files in this directory")
        return files
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or directory")


def check_file(file: Path) -> tuple[list[str], int | None, str]:
    """The problems of one file, reading included (through the one reader,
    `bench.results.read.read_document`), and when valid its format version and the
    commit it records."""
    from bench.results.read import LoadError, read_document

    try:
        doc = read_document(file)
    except LoadError as exc:
        return [str(exc)], None, ""
    found = problems(doc, str(file))
    return found, None if found else format_version(doc), "" if found else recorded_commit(doc)


def recorded_commit(doc: object) -> str:
    try:
        commit = doc["machine_info"]["nnparity"].get("git_commit", "")  # type: ignore[index]
    except (KeyError, TypeError, AttributeError):
        return ""
    return commit if isinstance(commit, str) else ""
