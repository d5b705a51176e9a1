"""What machine and software a run measured: the `nnparity` block of machine_info.

Everything here is read without importing a framework: versions come from
package metadata, the CPU from /proc/cpuinfo (or `platform`), the GPU from
`nvidia-smi`, the commit from git, the BLAS libraries from threadpoolctl (only
those the process has already loaded), precision settings from the environment
and from frameworks the process has already imported (never importing one).
The fingerprint is a short stable id of the hardware (CPU model, core count, GPU
name) so baselines can be matched to the machine they were measured on. The
block's fields are documented in docs/results-format.md; `FORMAT_VERSION` is the
results format it belongs to. This module must not time or write anything.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.results.paths import ROOT
from bench.results.schema import FORMAT_VERSION

# environment variables that set thread pools (impls/threads.py writes most of them)
THREAD_VARS = ("NNPARITY_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS", "XLA_FLAGS")
# environment variables that change numerics or kernel choice
PRECISION_VARS = ("NVIDIA_TF32_OVERRIDE", "TF_ENABLE_ONEDNN_OPTS", "JAX_DEFAULT_MATMUL_PRECISION",
                  "JAX_ENABLE_X64", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "MKL_CBWR",
                  "OPENBLAS_CORETYPE", "OPENBLAS_VERBOSE")

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


def installed_version(name: str) -> str | None:
    """The installed version of a framework (by the names it is distributed under), or None."""
    return _version(_DISTRIBUTIONS.get(name, (name, f"{name}-cpu")))


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


@lru_cache(maxsize=1)
def gpu_software() -> dict[str, str]:
    """Driver and CUDA versions from nvidia-smi, cuDNN from the wheels that ship it (or
    from an already imported torch); empty without a GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    out: dict[str, str] = {}
    try:
        text = subprocess.run([exe], capture_output=True, text=True, timeout=10).stdout
        driver = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    if driver.strip():
        out["driver"] = driver.strip().splitlines()[0].strip()
    for part in text.split("|"):
        if "CUDA Version:" in part:
            out["cuda"] = part.split("CUDA Version:", 1)[1].strip().split()[0]
    cudnn = _version(("nvidia-cudnn-cu12", "nvidia-cudnn-cu13", "nvidia-cudnn-cu11"))
    torch = sys.modules.get("torch")
    if cudnn is None and torch is not None:
        try:
            v = torch.backends.cudnn.version()
            cudnn = str(v) if v else None
        except Exception:  # a broken CUDA install must not lose the whole block
            cudnn = None
    if cudnn:
        out["cudnn"] = cudnn
    return out


def blas_info() -> list[dict[str, Any]]:
    """The BLAS/OpenMP libraries loaded in this process: library, version, kernel
    (OpenBLAS's `architecture`, e.g. Haswell), threading layer and threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # scikit-learn brings it; without it the block just says so
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "threading_layer",
            "num_threads", "prefix")
    out = []
    for lib in threadpool_info():
        entry = {k: lib[k] for k in keep if lib.get(k) is not None}
        if lib.get("filepath"):  # which copy (numpy's, scipy's, torch's) without the path
            entry["library"] = os.path.basename(lib["filepath"])
        out.append(entry)
    return sorted(out, key=lambda e: (e.get("user_api", ""), e.get("library", "")))


def thread_settings(threads: int) -> dict[str, Any]:
    env = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
    return {"configured": threads, "env": env}


def precision_settings() -> dict[str, Any]:
    """Precision-relevant environment variables and the settings of frameworks this
    process has already imported (the worker's, after it timed its cells)."""
    out: dict[str, Any] = {"env": {v: os.environ[v] for v in PRECISION_VARS
                                   if v in os.environ}}
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            out["torch_float32_matmul_precision"] = torch.get_float32_matmul_precision()
            out["torch_cuda_matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
            out["torch_cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        except Exception:  # an older torch without one of these: record what it has
            pass
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            out["jax_default_matmul_precision"] = str(jax.config.jax_default_matmul_precision)
            out["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
        except Exception:
            pass
    return out


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


def nnparity_info(threads: int, precisions: list[str] | None = None) -> dict[str, Any]:
    """The `machine_info["nnparity"]` block (see the raw-format contract); a run that
    asked for precision modes records them as `precisions` (absent: strict fp32 only)."""
    cpu, gpu, cores = cpu_model(), gpu_model(), os.cpu_count() or 1
    extra = {"precisions": list(precisions)} if precisions else {}
    return {
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint(cpu, cores, gpu),
        "cpu": cpu,
        "cores": cores,
        "gpu": gpu,
        "threads": threads,
        "frameworks": framework_versions(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "gpu_software": gpu_software(),
        "blas": blas_info(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
        "thread_settings": thread_settings(threads),
        "precision_settings": precision_settings(),
        **extra,
    }
