"""The PyTorch backend: eager primitive ops, `torch.compile`, and fused nn.RNN/LSTM/GRU.

Importing this package imports torch and applies the runtime configuration:
the shared thread policy (`impls.threads`). TF32 is turned off when a program
is built on GPU (`backend.py`). `impls/__init__.py` imports this package only
on `load("torch")`. Nothing else lives here; no module of this package may
import `bench`.
"""

from __future__ import annotations

import torch

from impls.threads import interop_threads, threads
from impls.torch.backend import TorchBackend

torch.set_num_threads(threads())
# torch's inter-op pool stays at its default unless the user asked (impls.threads)
if interop_threads() is not None:
    try:
        torch.set_num_interop_threads(interop_threads())
    except RuntimeError:  # the pool already started; Backend.threads() reports the real count
        pass

BACKEND = TorchBackend()

__all__ = ["BACKEND"]
