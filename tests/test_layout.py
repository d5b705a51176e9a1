"""The project's shape as a reader relies on it: commands, paths, citations, backend folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_bench_top_level_holds_only_the_cli_options_and_subpackages():
    top = {p.name for p in (ROOT / "bench").iterdir() if p.name != "__pycache__"}
    modules = {n for n in top if n.endswith(".py")}
    assert modules == {"__init__.py", "cli.py", "options.py"}
    for package in top - modules:
        assert (ROOT / "bench" / package / "__init__.py").is_file(), package


def test_every_backend_folder_has_the_same_modules():
    folders = [p for p in (ROOT / "impls").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert {p.name for p in folders} == {"numpy", "torch", "jax", "tensorflow"}
    for folder in folders:
        names = {p.name for p in folder.glob("*.py")}
        assert names == BACKEND_MODULES, folder.name


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
