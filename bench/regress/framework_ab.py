"""Virtual environments for `nnparity continuous --framework A,B`: one framework, two versions.

The other axis of `continuous`: the same nnparity revision timed under two
versions of one framework (e.g. `numpy==2.3.5,numpy==2.4.6`). Each version gets
its own virtual environment (`python -m venv`, then `pip install` of the
project and that exact version, from PyPI through pip's own configuration:
nothing else is downloaded), cached under `--venv-cache` by the requirement,
the Python version and the project's dependency list, so a second A/B reuses
them. The installed version is read back and must be the one asked for. The
interleaving and the verdict are continuous's and compare's, unchanged.

This module must not import a framework or time anything; subprocesses are
started through a `runner` argument so the tests can fake venv and pip.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.options import InputError

#: distribution name -> the nnparity backend it provides
BACKEND_OF = {"numpy": "numpy", "torch": "torch", "jax": "jax", "jaxlib": "jax",
              "tensorflow": "tensorflow", "tensorflow-cpu": "tensorflow", "keras": "tensorflow"}
MARKER = "nnparity-venv.json"
_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class Requirement:
    """One side of the A/B: `name==version`."""

    name: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def backend(self) -> str | None:
        return BACKEND_OF.get(self.name.lower())


def parse_frameworks(text: str) -> tuple[Requirement, Requirement]:
    """`numpy==2.3.5,numpy==2.4.6` -> two requirements of the same distribution."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if len(items) != 2:
        raise InputError(f"--framework {text!r}: expected two pinned versions of one "
                         "framework, e.g. numpy==2.3.5,numpy==2.4.6")
    reqs = []
    for item in items:
        match = _SPEC.match(item)
        if not match:
            raise InputError(f"--framework {item!r}: expected NAME==VERSION, e.g. numpy==2.4.6")
        reqs.append(Requirement(match.group(1), match.group(2)))
    a, b = reqs
    if _norm(a.name) != _norm(b.name):
        raise InputError(f"--framework: {a.name} and {b.name} are different frameworks; "
                         "an A/B compares two versions of one")
    if a.version == b.version:
        raise InputError(f"--framework: both sides are {a.spec}; name two different versions")
    return a, b


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cache_key(req: Requirement, project: Path, python: str) -> str:
    """Requirement + interpreter version + the project's pyproject.toml: a new
    dependency list makes a new environment."""
    pyproject = project / "pyproject.toml"
    deps = pyproject.read_bytes() if pyproject.is_file() else b""
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"],
                             capture_output=True, text=True).stdout.strip()
    digest = hashlib.sha1(deps + version.encode() + req.spec.encode()).hexdigest()[:10]
    return f"{_norm(req.name)}-{req.version}-{digest}"


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def install_commands(req: Requirement, project: Path, env: Path,
                     python: str) -> list[list[str]]:
    """Create the venv, then pip-install the project and the pinned framework together
    (one resolver run, so the project's own dependencies cannot move the pin)."""
    py = str(venv_python(env))
    return [[python, "-m", "venv", str(env)],
            [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             str(project), req.spec]]


def installed_version(python: str, name: str, runner: Runner = subprocess.run) -> str:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    proc = runner([python, "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _same_version(found: str, wanted: str) -> bool:
    return found == wanted or found.split("+", 1)[0] == wanted  # torch's "2.13.0+cpu"


def ensure_venv(req: Requirement, project: Path, cache: Path, python: str,
                runner: Runner = subprocess.run, log: Callable[[str], None] | None = None) -> str:
    """The interpreter of a venv holding the project's dependencies and `req`, created
    (or reused from `cache`); a failed install or a wrong version is a one-line error."""
    env = cache / cache_key(req, project, python)
    py = str(venv_python(env))
    marker = env / MARKER
    if marker.is_file() and _same_version(installed_version(py, req.name, runner), req.version):
        if log:
            log(f"reusing the {req.spec} environment {env}")
        return py
    if log:
        log(f"creating the {req.spec} environment {env} (python -m venv + pip install from "
            "PyPI; minutes the first time)")
    for cmd in install_commands(req, project, env, python):
        proc = runner(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            last = lines[-1] if lines else f"exit {proc.returncode}"
            raise InputError(f"--framework {req.spec}: `{' '.join(cmd[:4])} ...` failed: {last}")
    found = installed_version(py, req.name, runner)
    if not _same_version(found, req.version):
        raise InputError(f"--framework {req.spec}: the environment has {req.name} "
                         f"{found or 'not installed'}, not {req.version}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"requirement": req.spec, "python": python}) + "\n")
    return py
