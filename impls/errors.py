"""The exception every backend raises when it cannot do what was asked.

A leaf module: `impls.base`, `impls.threads` and every backend import it, and
it imports nothing from the project. `impls.BackendError` and
`impls.base.BackendError` are this same class.
"""

from __future__ import annotations


class BackendError(RuntimeError):
    """A backend cannot do what was asked (not installed, no such device, ...)."""
