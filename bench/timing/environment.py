"""What machine and software a run measured: the `nnparity` block of machine_info.

Everything here is read without importing a framework: versions come from
package metadata, the CPU from /proc/cpuinfo (or `platform`), the GPU from
`nvidia-smi`, the commit from git. The fingerprint is a short stable id of the
hardware (CPU model, core count, GPU name) so baselines can be matched to the
machine they were measured on. This module must not time or write anything.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.results.paths import ROOT

# backend name -> distributions that may provide it (first one installed wins)
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "jax": ("jax",),
    "jaxlib": ("jaxlib",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
    "keras": ("keras",),
    "pytest-benchmark": ("pytest-benchmark",),
}


def _version(dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def framework_versions() -> dict[str, str]:
    """Installed framework versions by name (missing ones left out)."""
    found = {name: _version(dists) for name, dists in _DISTRIBUTIONS.items()}
    return {name: v for name, v in found.items() if v}


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=1)
def gpu_model() -> str:
    """GPU names from nvidia-smi, comma-joined; "" when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return ", ".join(line.strip() for line in out.splitlines() if line.strip())


def has_cuda() -> bool:
    return bool(gpu_model())


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD's hash, with "+dirty" when tracked files differ from it; "" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty.strip() else "")


def fingerprint(cpu: str, cores: int, gpu: str) -> str:
    return hashlib.sha1(f"{cpu}|{cores}|{gpu}".encode()).hexdigest()[:12]


def framework_threads() -> dict[str, dict[str, Any]]:
    """What each backend this process has loaded runs with (`Backend.threads`).

    Only backends already imported are asked, so this never imports a framework."""
    import sys

    out: dict[str, dict[str, Any]] = {}
    for name in ("numpy", "torch", "jax", "tensorflow"):
        module = sys.modules.get(f"impls.{name}")
        backend = getattr(module, "BACKEND", None)
        if backend is not None:
            out[name] = dict(backend.threads())
    return out


def nnparity_info(threads: int) -> dict[str, Any]:
    """The `machine_info["nnparity"]` block (see the raw-format contract)."""
    cpu, gpu, cores = cpu_model(), gpu_model(), os.cpu_count() or 1
    return {
        "fingerprint": fingerprint(cpu, cores, gpu),
        "cpu": cpu,
        "cores": cores,
        "gpu": gpu,
        "threads": threads,
        "frameworks": framework_versions(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
