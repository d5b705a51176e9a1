"""`nnparity continuous --framework A,B`: venvs (faked here: no pip, no network), interleaving,
the verdict and the environment differences."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAKE_RECORD_SOURCE

from bench import cli
from bench.options import InputError
from bench.regress import framework_ab

FAKE_CLI = '''
import json, os, pathlib, random, sys, zlib
''' + FAKE_RECORD_SOURCE + '''
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1])
version = os.environ["FAKE_FRAMEWORK_VERSION"]  # set by the fake venv's python
with open(os.environ["NNPARITY_FAKE_LOG"], "a") as fh:
    fh.write(version + " " + " ".join(args) + "\\n")
speed = 2.0 if version == "2.0" else 1.0
rng = random.Random(zlib.crc32(str(out).encode()))
benches = []
for cell in ("mlp/numpy/ref/cpu/float64/bs8/step", "rnn/numpy/ref/cpu/float64/bs8/step"):
    data = [0.01 * speed * (1 + 0.03 * rng.gauss(0, 1)) for _ in range(8)]
    benches.append(fake_record(cell, data))
env = {**FAKE_ENV, "frameworks": {"numpy": version}}
doc = {"machine_info": {"nnparity": env}, "benchmarks": benches}
(out / "ts").mkdir(parents=True)
(out / "ts" / "results.json").write_text(json.dumps(doc))
'''


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    *argv], check=True, capture_output=True)


@pytest.fixture
def fake_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One commit whose "harness" times slower under framework version 2.0; venvs are
    shell wrappers around this interpreter that say which version they hold."""
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "__init__.py").write_text("")
    (repo / "bench" / "cli.py").write_text(FAKE_CLI)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "fake harness")
    monkeypatch.setenv("NNPARITY_FAKE_LOG", str(tmp_path / "calls.log"))

    def fake_venv(req, project, cache, python, runner=None, log=None):
        assert (project / "bench" / "cli.py").is_file()  # the revision's own tree
        wrapper = cache / req.spec / "python"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(f"#!/bin/sh\nFAKE_FRAMEWORK_VERSION={req.version} "
                           f"exec {sys.executable} \"$@\"\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
        return str(wrapper)

    monkeypatch.setattr(framework_ab, "ensure_venv", fake_venv)
    return repo


def test_framework_ab_interleaves_two_venvs_and_flags_the_slower_version(
        fake_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["continuous", "--framework", "numpy==1.0,numpy==2.0", "--repeat", "3",
                     "--confirm", "0", "--repo", str(fake_repo),
                     "--venv-cache", str(tmp_path / "venvs")])
    assert code == 1  # 2.0 is twice as slow: a regression
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["1.0", "2.0"] * 3
    assert all(c.endswith("--backends numpy") for c in calls)  # only the framework under test
    out = capsys.readouterr().out
    assert "baseline: base numpy==1.0 at HEAD (3 rounds)" in out
    assert "current:  head numpy==2.0 at HEAD (3 rounds)" in out
    assert "environment differs: numpy: 1.0 (baseline) vs 2.0 (current)" in out
    assert out.count("regression ") == 2 and "2 regression" in out
    worktrees = subprocess.run(["git", "-C", str(fake_repo), "worktree", "list"],
                               capture_output=True, text=True, check=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the temporary worktree is gone


def test_same_version_twice_is_unchanged(fake_repo: Path, tmp_path: Path) -> None:
    assert cli.main(["continuous", "--framework", "numpy==1.0,numpy==1.00", "--repeat", "2",
                     "--confirm", "0", "--repo", str(fake_repo), "--run-args",
                     "--backends numpy,torch", "--venv-cache", str(tmp_path / "v")]) == 0
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert all(c.endswith("--backends numpy,torch") for c in calls)  # the user's choice kept


@pytest.mark.parametrize("argv", [
    ("--framework", "numpy==1.0"),
    ("--framework", "numpy==1.0,torch==2.0"),
    ("--framework", "numpy==1.0,numpy==1.0"),
    ("--framework", "numpy>=1,numpy==2"),
    ("--framework", "numpy==1,numpy==2", "HEAD", "HEAD"),
    (),
])
def test_bad_framework_arguments_exit_2(fake_repo: Path, argv: tuple[str, ...]) -> None:
    assert cli.main(["continuous", *argv, "--repo", str(fake_repo)]) == 2


class _FakeRunner:
    """Stands in for subprocess.run: records commands, fakes venv, pip and the version."""

    def __init__(self, version: str, pip_fails: bool = False) -> None:
        self.version, self.pip_fails, self.calls = version, pip_fails, []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            (Path(cmd[3]) / "bin").mkdir(parents=True)
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[1:4] == ["-m", "pip", "install"]:
            err = "ERROR: No matching distribution found for numpy==9.9" if self.pip_fails else ""
            return subprocess.CompletedProcess(cmd, 1 if self.pip_fails else 0, "", err)
        return subprocess.CompletedProcess(cmd, 0, self.version + "\n", "")  # the version check


def test_ensure_venv_installs_project_and_pin_from_pypi_then_reuses(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    req = framework_ab.Requirement("numpy", "2.3.5")
    runner = _FakeRunner("2.3.5")
    py = framework_ab.ensure_venv(req, project, tmp_path / "cache", sys.executable, runner)
    venv_cmd, pip_cmd = runner.calls[0], runner.calls[1]
    assert venv_cmd[:3] == [sys.executable, "-m", "venv"]
    assert pip_cmd[0] == py and pip_cmd[-2:] == [str(project), "numpy==2.3.5"]
    # PyPI through pip's own configuration: no other index, no URLs, no local wheels
    assert not any(a.startswith(("-i", "--index", "--extra-index", "--find-links", "-f", "http"))
                   for a in pip_cmd[4:-2])
    again = _FakeRunner("2.3.5")
    assert framework_ab.ensure_venv(req, project, tmp_path / "cache", sys.executable,
                                    again) == py
    assert all(c[1:3] != ["-m", "venv"] and "pip" not in c for c in again.calls)  # reused
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['y']\n")
    assert framework_ab.ensure_venv(req, project, tmp_path / "cache", sys.executable,
                                    _FakeRunner("2.3.5")) != py  # new dependencies: new venv


def test_ensure_venv_failures_are_one_line(tmp_path: Path) -> None:
    req = framework_ab.Requirement("numpy", "9.9")
    with pytest.raises(InputError, match="No matching distribution") as exc:
        framework_ab.ensure_venv(req, tmp_path, tmp_path / "c1", sys.executable,
                                 _FakeRunner("9.9", pip_fails=True))
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="has numpy 2.4.6, not 9.9"):
        framework_ab.ensure_venv(req, tmp_path, tmp_path / "c2", sys.executable,
                                 _FakeRunner("2.4.6"))


def test_parse_frameworks_and_backend() -> None:
    a, b = framework_ab.parse_frameworks("torch==2.12.0, torch==2.13.0")
    assert (a.spec, b.spec, a.backend) == ("torch==2.12.0", "torch==2.13.0", "torch")
    assert framework_ab.parse_frameworks("tensorflow-cpu==2.16.1,tensorflow-cpu==2.17.0")[
        0].backend == "tensorflow"
    assert os.sep not in framework_ab.cache_key(a, Path("/nonexistent"), sys.executable)
