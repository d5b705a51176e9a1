"""The PyTorch backend: eager primitive ops, `torch.compile`, and fused nn.RNN/LSTM/GRU.

Importing this package imports torch and applies the runtime configuration:
the shared thread count (`impls.threads`). TF32 is turned off when a program
is built on GPU (`backend.py`). `impls/__init__.py` imports this package only
on `load("torch")`. Nothing else lives here; no module of this package may
import `bench`.
"""

from __future__ import annotations

import torch

from impls.threads import threads
from impls.torch.backend import TorchBackend

torch.set_num_threads(threads())

BACKEND = TorchBackend()

__all__ = ["BACKEND"]
