"""Backend registry. Imports no framework: a backend's module (and with it its
framework) is imported only when `load` asks for it (the einops rule)."""

from __future__ import annotations

import importlib
import importlib.util

from impls.base import DTYPES, Backend, BackendError, Program

# backend name -> the framework package it needs
BACKENDS: dict[str, str] = {
    "numpy": "numpy",
    "torch": "torch",
    "jax": "jax",
    "tensorflow": "tensorflow",
}

__all__ = ["BACKENDS", "DTYPES", "Backend", "BackendError", "Program", "is_installed", "load"]


def is_installed(name: str) -> bool:
    """True when the framework behind backend `name` can be imported."""
    return importlib.util.find_spec(BACKENDS[name]) is not None


def load(name: str) -> Backend:
    """The backend object for `name`; raises BackendError when unavailable."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if not is_installed(name):
        raise BackendError(f"backend {name!r} is not installed (pip install 'nnparity[{name}]')")
    module = importlib.import_module(f"impls.{name}")
    return module.BACKEND
