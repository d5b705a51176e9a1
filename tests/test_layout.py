"""The project's shape as a reader relies on it: commands, paths, citations, backend folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench.cli
from bench.results import paths

ROOT = Path(__file__).resolve().parent.parent
BACKEND_MODULES = {"__init__.py", "backend.py", "program.py", "model.py", "layers.py",
                   "recurrent.py", "losses.py", "optim.py"}


def test_readme_lists_exactly_the_commands_of_nnparity_help():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```", 2)[1]
    listed = {m.group(1) for m in re.finditer(r"^nnparity (\w+)", block, re.M)}
    parser = bench.cli.build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert listed == commands


def test_bench_top_level_holds_only_the_cli_options_progress_and_subpackages():
    top = {p.name for p in (ROOT / "bench").iterdir() if p.name != "__pycache__"}
    modules = {n for n in top if n.endswith(".py")}
    assert modules == {"__init__.py", "cli.py", "options.py", "progress.py", "clidoc.py"}
    for package in top - modules:
        assert (ROOT / "bench" / package / "__init__.py").is_file(), package


def test_every_backend_folder_has_the_same_modules():
    folders = [p for p in (ROOT / "impls").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert {p.name for p in folders} == {"numpy", "torch", "jax", "tensorflow"}
    for folder in folders:
        names = {p.name for p in folder.glob("*.py")}
        assert names == BACKEND_MODULES, folder.name


# -- the module maps of README.md (Layout) and docs/design.md (§1) against the tree ---------------

BACKEND_DIRS = ("impls/numpy/", "impls/torch/", "impls/jax/", "impls/tensorflow/")


def _packages() -> dict[str, set[str]]:
    """Every package directory of tasks/impls/bench -> its modules (file stems, no __init__)."""
    found = {}
    for top in ("tasks", "impls", "bench"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            folder = init.parent
            found[f"{folder.relative_to(ROOT)}/"] = {
                f.stem for f in folder.glob("*.py") if f.name != "__init__.py"}
    return found


def _expand(key: str) -> list[str]:
    return list(BACKEND_DIRS) if key == "impls/<framework>/" else [key]


def _design_map() -> dict[str, str]:
    text = (ROOT / "docs/design.md").read_text()
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^\| `((?:tasks|impls|bench)/[^`]*)` \|(.*)\|$", text, re.M)}


def _readme_map() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    parent = key = ""
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+/) +(.*)$", line)
        if m and m.group(2).endswith("/"):
            key = m.group(2) if not m.group(1) else parent + m.group(2)
            parent = key if not m.group(1) else parent
            entries[key] = m.group(3)
        elif key:
            entries[key] += " " + line.strip()
    return {k: v for k, v in entries.items() if k.startswith(("tasks/", "impls/", "bench/"))}


@pytest.mark.parametrize("where", ["README.md", "docs/design.md"])
def test_the_module_map_names_every_module_and_none_that_does_not_exist(where):
    entries = _readme_map() if where == "README.md" else _design_map()
    packages = _packages()
    mapped = {}
    for key, text in entries.items():
        for folder in _expand(key):
            assert folder in packages, f"{where} maps {key}, which is not a package"
            mapped[folder] = set(re.findall(r"\b(\w+)\.py\b", text))
    problems = [f"{folder}: missing {sorted(modules - mapped.get(folder, set()))}, "
                f"not in the tree {sorted(mapped.get(folder, set()) - modules)}"
                for folder, modules in sorted(packages.items())
                if mapped.get(folder) != modules]
    assert not problems, f"{where}'s module map differs from the tree:\n" + "\n".join(problems)


def test_no_source_cites_a_file_that_is_not_in_the_repository():
    cited = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w-]+\.(?:py|md))\b|\b(DESIGN\.md)\b")
    missing = []
    for folder in ("tasks", "impls", "bench", "tests"):
        for file in (ROOT / folder).rglob("*.py"):
            for match in cited.finditer(file.read_text()):
                name = match.group(1) or match.group(2)
                if not (ROOT / name).exists():
                    missing.append(f"{file.relative_to(ROOT)}: {name}")
    assert not missing, missing


def test_results_paths_come_from_the_repository_root():
    for path in (paths.RUNS, paths.BASELINES, paths.HISTORY_FILE, paths.HISTORY_PLOTS):
        assert path.is_absolute() and path.is_relative_to(ROOT)
    # history and its plots live with the git-ignored raw runs, not in a tracked folder
    assert paths.HISTORY_FILE.is_relative_to(paths.RUNS)
    assert paths.HISTORY_PLOTS.is_relative_to(paths.RUNS)


def test_baseline_check_finds_the_committed_baseline_from_another_directory(tmp_path):
    committed = sorted(paths.BASELINES.glob("*.json"))
    if not committed:
        return
    run = tmp_path / "run.json"
    shutil.copy(committed[0], run)  # a baseline is a results file of its own machine
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "baseline", "check", str(run)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert f"comparing with the baseline of this machine: {committed[0]}" in proc.stderr
