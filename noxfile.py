"""Nox sessions: tests, lint, bench (run + report + compare), report, compare, gradcheck,
perfgate, race, study.

Every session installs the project with all four frameworks into its own
virtualenv, so a fresh clone needs only Python 3.11+ and `pip install nox`.
Sessions run under the interpreter nox itself runs on (no version pin, so
nox never skips a session for want of an interpreter). Arguments after `--`
are passed through.

Framework builds are chosen deliberately, because a bare `torch==X` pulls
the multi-GB CUDA build on Linux: on a machine without an NVIDIA GPU, CPU
builds (torch from PyTorch's CPU index, jax, tensorflow-cpu); on a machine
with one, CUDA builds (torch's default wheel, `jax[cuda12]`,
`tensorflow[and-cuda]`). `NNPARITY_BUILD=cpu|cuda` overrides the detection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
MIN_PYTHON = (3, 11)
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}
BUILD_ENV = "NNPARITY_BUILD"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Builds:
    """Which framework builds to install, and why."""

    kind: str  # "cpu" or "cuda"
    reason: str
    extras: tuple[str, ...]  # the project's extras that carry the frameworks
    # installed first, alone: torch's CPU build from PyTorch's index, without its
    # dependencies, so that index is asked about torch only (each extra index is
    # queried for every package it is given, and slowly where it cannot be reached)
    first: tuple[str, ...] = ()


def has_nvidia_gpu(which: Callable[[str], str | None] = shutil.which,
                   proc: Path = Path("/proc/driver/nvidia/gpus")) -> bool:
    """An NVIDIA driver with at least one GPU: the kernel's GPU list, or `nvidia-smi -L`."""
    if proc.is_dir() and any(proc.iterdir()):
        return True
    smi = which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


PYPROJECT = Path(__file__).with_name("pyproject.toml")


def torch_requirement(pyproject: Path = PYPROJECT) -> str:
    """The project's torch pin (its `torch` extra), so both install steps agree."""
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    return extras["torch"][0]


def select_builds(env: Mapping[str, str], gpu: bool) -> Builds:
    """CPU or CUDA framework builds for this machine; `NNPARITY_BUILD` overrides."""
    wanted = env.get(BUILD_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{BUILD_ENV}={wanted!r}: choose auto, cpu or cuda")
    if wanted == "auto":
        kind = "cuda" if gpu else "cpu"
        reason = "an NVIDIA GPU was found" if gpu else "no NVIDIA GPU was found"
    else:
        kind, reason = wanted, f"{BUILD_ENV}={wanted}"
    if kind == "cuda":
        return Builds("cuda", reason, ("torch", "jax-cuda", "tensorflow-cuda"))
    # PyTorch's CPU index holds `torch==X+cpu`, which outranks PyPI's CUDA build of X;
    # the second step's `torch==X` is then already satisfied by it
    return Builds("cpu", reason, ("torch", "jax", "tensorflow"),
                  ("--no-deps", "--extra-index-url", PYTORCH_CPU_INDEX, torch_requirement()))


def check_python(version: tuple[int, ...] = tuple(sys.version_info)) -> str | None:
    """Why this interpreter cannot run the project, or None when it can."""
    if version[:2] < MIN_PYTHON:
        return (f"nnparity needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+; nox runs on "
                f"{version[0]}.{version[1]}: start nox with a newer python3")
    return None


def _install(session: nox.Session) -> None:
    problem = check_python()
    if problem:
        session.error(problem)
    try:
        builds = select_builds(os.environ, has_nvidia_gpu())
    except ValueError as exc:
        session.error(str(exc))
    session.log(f"framework builds: {builds.kind} ({builds.reason}; "
                f"set {BUILD_ENV}=cpu|cuda to override)")
    if builds.first:
        session.install(*builds.first)
    session.install("-e", f".[{','.join((*builds.extras, 'dev'))}]")


def pytest_args(posargs: list[str], cores: int | None = None) -> list[str]:
    """pytest's arguments: one xdist worker per core (tests are independent and
    each worker runs its frameworks on one thread, tests/conftest.py), unless the
    caller chose workers (`-n N`, `-n0`) or turned xdist off (`-p no:xdist`)."""
    chose = any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in posargs) or \
        "no:xdist" in posargs
    cores = cores or os.cpu_count() or 1
    if chose or cores < 2:
        return ["-q", *posargs]
    return ["-q", "-n", str(cores), "--dist", "worksteal", *posargs]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (unit tests need no framework; backend tests skip when one is missing)."""
    _install(session)
    session.run("pytest", *pytest_args(session.posargs), env=QUIET_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole project."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def gradcheck(session: nox.Session) -> None:
    """Every backend against the float64 reference, in float64 and float32."""
    _install(session)
    for dtype in ("float64", "float32"):
        session.run("nnparity", "gradcheck", "--dtypes", dtype, *session.posargs, env=QUIET_ENV)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the timing matrix, write the report, compare with this machine's baseline,
    and add the run to this machine's history (results/runs/history.csv, git-ignored)."""
    _install(session)
    run_dir = os.path.join("results", "runs", session.run(
        "python", "-c", "import time; print(time.strftime('%Y%m%d-%H%M%S'))",
        silent=True).strip())
    # exit 1 (cells that failed agreement or errored) still gets its report; the
    # session fails at the end (bench.timing.runner.count_failures)
    session.run("nnparity", "run", "--out", run_dir, *session.posargs, env=QUIET_ENV,
                success_codes=[0, 1])
    session.run("nnparity", "report", run_dir, env=QUIET_ENV)
    session.run("nnparity", "baseline", "check", run_dir, env=QUIET_ENV, success_codes=[0, 1])
    # this machine's history: results/runs/history.csv and its plots, git-ignored like the runs
    session.run("nnparity", "history", "--add", run_dir, env=QUIET_ENV)
    session.log(f"report: {run_dir}/REPORT.md")
    session.run("python", "-c", "import sys; from pathlib import Path; "
                "from bench.timing.runner import count_failures; "
                f"bad, err = count_failures(Path({run_dir!r})); "
                "sys.exit(f'{bad} cell(s) failed agreement, {err} errored' if bad or err "
                "else 0)", env=QUIET_ENV)


@nox.session
def perfgate(session: nox.Session) -> None:
    """The whole quick matrix (every phase and batch size) as a performance gate:
    `continuous` of BASE (default HEAD~1) against HEAD, the check .ci/run makes on
    the step phase only (nox -s perfgate -- main to compare with a branch point)."""
    _install(session)
    base = session.posargs[0] if session.posargs else "HEAD~1"
    session.run("nnparity", "continuous", base, "HEAD", "--preset", "quick", "--repeat", "2",
                "--confirm", "5", "--factor", "1.5", "--alpha", "0.01", *session.posargs[1:],
                env=QUIET_ENV)


@nox.session
def race(session: nox.Session) -> None:
    """Time to a trained model, every backend to one target from the same start, into a new
    run directory under results/runs/ (nox -s race -- --out results/race to publish;
    -- --report DIR renders REPORT.md, REPORT.html and figures again from DIR/race.json;
    -- --resume --out DIR finishes an interrupted race)."""
    _install(session)
    session.run("nnparity", "race", *session.posargs, env=QUIET_ENV)


@nox.session
def study(session: nox.Session) -> None:
    """The gradient-flow study into results/runs/study (nox -s study -- --out results/study
    to publish; -- --report DIR rebuilds a report from its raw data)."""
    _install(session)
    session.run("nnparity", "study", *session.posargs, env=QUIET_ENV)


@nox.session
def report(session: nox.Session) -> None:
    """Regenerate REPORT.md and figures for a run directory: nox -s report -- RUN_DIR."""
    _install(session)
    session.run("nnparity", "report", *session.posargs, env=QUIET_ENV)


@nox.session
def compare(session: nox.Session) -> None:
    """Compare two runs: nox -s compare -- BASELINE CURRENT [--factor F]."""
    _install(session)
    session.run("nnparity", "compare", *session.posargs, env=QUIET_ENV)
