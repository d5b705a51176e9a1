"""Nox sessions: tests, lint, bench (run + report + compare), report, compare, gradcheck.

Every session installs the project with all four frameworks into its own
virtualenv (torch pinned to the CPU wheel), so a fresh clone needs only
Python and `pip install nox`. Arguments after `--` are passed through.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}


def _install(session: nox.Session) -> None:
    session.install("-e", ".[all,dev]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (unit tests need no framework; backend tests skip when one is missing)."""
    _install(session)
    session.run("pytest", "-q", *session.posargs, env=QUIET_ENV)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole project."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def gradcheck(session: nox.Session) -> None:
    """Every backend against the float64 reference, in float64 and float32."""
    _install(session)
    for dtype in ("float64", "float32"):
        session.run("nnparity", "gradcheck", "--dtypes", dtype, *session.posargs, env=QUIET_ENV)


@nox.session(python=PYTHON)
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


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Regenerate REPORT.md and figures for a run directory: nox -s report -- RUN_DIR."""
    _install(session)
    session.run("nnparity", "report", *session.posargs, env=QUIET_ENV)


@nox.session(python=PYTHON)
def compare(session: nox.Session) -> None:
    """Compare two runs: nox -s compare -- BASELINE CURRENT [--factor F]."""
    _install(session)
    session.run("nnparity", "compare", *session.posargs, env=QUIET_ENV)
