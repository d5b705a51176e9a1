"""docs/cli.md is generated from the parser and must stay so; every list option takes
its singular spelling as an alias (as README and docs/cli.md say)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import re
from pathlib import Path

import pytest

from bench import cli, clidoc

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "python -m bench.clidoc > docs/cli.md"


def test_docs_cli_md_is_what_the_parser_generates() -> None:
    written = (ROOT / "docs/cli.md").read_text(encoding="utf-8")
    generated = clidoc.generate()
    diff = "\n".join(list(difflib.unified_diff(written.splitlines(), generated.splitlines(),
                                               "docs/cli.md", "generated", lineterm=""))[:40])
    assert written == generated, (f"docs/cli.md is out of date; regenerate it with "
                                  f"`{REGENERATE}` and commit it:\n{diff}")


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def _section(doc: str, command: str) -> str:
    start = doc.index(f"## `nnparity {command}`")
    end = doc.find("\n## ", start + 1)
    return doc[start:end if end > 0 else None]


COMMANDS = [name for name, _, _ in cli.COMMANDS]


def _positionals(help_text: str) -> set[str]:
    block = help_text.split("positional arguments:\n", 1)
    if len(block) == 1:
        return set()
    names = []
    for line in block[1].splitlines():
        if not line.strip():
            break
        if re.match(r"^  \S", line):
            names.append(line.split()[0].lower())
    return set(names)


@pytest.mark.parametrize("command", COMMANDS)
def test_the_reference_names_every_option_that_help_prints_and_no_other(command: str) -> None:
    text = _help(command)
    # option strings as `nnparity COMMAND --help` prints them: "  -k EXPR, --x X   help"
    in_help = {word.split()[0] for line in text.splitlines()
               if (m := re.match(r"^  (-[^ ].*?)(?:  |$)", line))
               for word in m.group(1).split(", ")} - {"-h", "--help"}
    table = _section(clidoc.generate(), command).split("| option |", 1)[-1]
    in_doc = {o for row in re.findall(r"^\| (`-[^|]*)\|", table, re.M)
               for o in re.findall(r"`(-[^`]+)`", row)}
    assert in_doc == in_help
    doc_positionals = {n.lower().removesuffix(" ...")
                       for n in re.findall(r"^\| `([A-Z][^`]*)`", table, re.M)}
    assert doc_positionals == _positionals(text)
    if command == "run":
        assert len(in_help) > 25


@pytest.mark.parametrize("command", COMMANDS)
def test_the_reference_gives_each_help_text_as_help_prints_it(command: str) -> None:
    """argparse expands `%%` and `%(default)s` in help texts; the reference must too."""
    parser = clidoc.subparsers(cli.build_parser())[command]
    section = " ".join(_section(clidoc.generate(), command).split())
    for action in parser._actions:
        if action.help and action.dest != "help":
            printed = " ".join(clidoc.portable(
                parser._get_formatter()._expand_help(action)).split()).replace("|", "\\|")
            assert printed in section, (command, action.option_strings, printed)
    assert "%%" not in section and "%(" not in section


def _list_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Options that take comma lists: appended to, named in the plural."""
    return [a for a in parser._actions if isinstance(a, argparse._AppendAction)
            and any(o.startswith("--") and o.endswith("s") for o in a.option_strings)]


def test_every_list_option_takes_its_singular_spelling() -> None:
    commands = clidoc.subparsers(cli.build_parser())
    found = 0
    for name, parser in commands.items():
        for action in _list_options(parser):
            plural = max(action.option_strings, key=len)
            singular = plural.removesuffix("s")
            assert singular in action.option_strings, f"nnparity {name} {plural}"
            found += 1
    assert found >= 15  # run: 8, gradcheck: 6, study: 1


@pytest.mark.parametrize("singular", ["--task", "--backend", "--variant", "--phase",
                                      "--device", "--dtype", "--precision", "--machine"])
def test_run_reads_a_singular_list_option_into_the_plural_list(singular: str) -> None:
    args = cli.build_parser().parse_args(["run", singular, "a", f"{singular}s", "b,c"])
    assert getattr(args, singular[2:] + "s") == ["a", "b,c"]


def test_an_abbreviation_is_still_refused(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args(["run", "--back", "numpy"])
    assert done.value.code == 2


def test_readme_names_every_command_and_every_singular_alias() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Command line"):]
    block = section.split("```\n", 2)[1]
    assert [line.split()[1] for line in block.splitlines() if line.strip()] == COMMANDS
    assert "(docs/cli.md)" in section
    said = set(re.findall(r"`(--\w+)`", section[:section.index("Task knobs")]))
    singulars = {max(a.option_strings, key=len).removesuffix("s")
                 for p in clidoc.subparsers(cli.build_parser()).values()
                 for a in _list_options(p)}
    assert singulars <= said
    # ... and names no alias the parser lacks: the list after "as an alias" is exactly them
    claim = re.search(r"singular spelling as an alias\s*\(([^)]*)\)", section)
    assert claim, "README must say which options take a singular alias"
    assert set(re.findall(r"`(--[\w-]+)`", claim.group(1))) == singulars
