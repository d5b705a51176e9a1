"""Backend registry, and the layout every backend folder follows.

Imports no framework: a backend's package (and with it its framework) is
imported only when `load` asks for it (the einops rule).

Every `impls/<framework>/` has the same modules, each with one role (as
Keras 3's `keras/src/backend/<framework>/` does):

- `__init__.py`  runtime configuration (threads, precision flags, GPU memory)
                 applied at import, and `BACKEND`; nothing else.
- `backend.py`   the `Backend` subclass: variants, devices, `_build`.
- `program.py`   the `Program` subclass: put, forward, loss_and_grads, step,
                 sync, conversion back to canonical form, and `piecewise_inputs`
                 (ReLU pre-activations and max-pool inputs, from `model.py`,
                 for the agreement check's kink count; optional).
- `model.py`     the whole `ModelSpec` as the framework's function: `forward`,
                 `loss`, `loss_probed`, `piecewise_inputs` (functions, or methods
                 or fields of the model object) and, where native layouts differ,
                 the canonical <-> native conversions.
- `layers.py`    feed-forward layers and activations.
- `recurrent.py` hand-written RNN/LSTM/GRU cells, and the framework's fused
                 recurrent layer (`FusedRecurrent`) where a variant uses one.
- `losses.py`    `mse`, `softmax_cross_entropy` and `LOSSES` (name -> function).
- `optim.py`     the rules of `tasks.optim`, written out: `init_state`, `make_update`.

Same role, same name and argument order (`CONTRACT` below lists the names).
Layer functions take the input first, then parameters in canonical order, then
the spec's settings:

    dense(x, weight, bias, activation)
    conv2d(x, weight, bias, stride, pad, activation)
    maxpool2d(x, size)
    flatten(x)
    recurrent(x, w_ih, w_hh, b_ih, b_hh, cell, return_sequences[, unroll])
    activate(name, z)

Parameters arrive in the framework's native layout (variables created in
`model.py`). The NumPy reference writes its backward by hand, so it has
`<layer>_forward` (returning `(out, cache)`) and `<layer>_backward(dout,
cache, need_dx)` pairs instead, with the same forward arguments. Rules shared
by all four (dtypes, devices, precision modes and labels, fp16 loss scaling,
label dtype, probe shapes) live once, framework-free, in `impls.base`. No
module in `impls` imports `bench`.
"""

from __future__ import annotations

import importlib
import importlib.util

from impls.base import DTYPES, PRECISIONS, Backend, BackendError, Program

# backend name -> the framework package it needs
BACKENDS: dict[str, str] = {
    "numpy": "numpy",
    "torch": "torch",
    "jax": "jax",
    "tensorflow": "tensorflow",
}

#: The optimiser rules of tasks.optim, one API in every backend's `optim.py`:
#: `init_state(spec, params) -> state` and `make_update(spec) -> update`, where
#: `update(params, grads, state) -> (params, state)`. Params, grads and state are the
#: backend's native containers. NumPy, torch and TensorFlow update in place and return
#: the same objects; JAX returns new ones (its update is pure, traced inside the jitted
#: step). A program always keeps what `update` returns.
OPTIMIZER_API: tuple[str, ...] = ("init_state", "make_update")
#: The contract beyond file names: the public names each module of every backend
#: defines (tests/test_backend_contract.py parses the modules, importing no framework,
#: and checks them). "Backend"/"Program": a subclass of that class. A method or field
#: of a public class counts as the module's name where the backend's model is an object
#: (torch's `TorchModel.forward`, TensorFlow's `Model.forward`).
CONTRACT: dict[str, tuple[str, ...]] = {
    "__init__": ("BACKEND",),
    "backend": ("Backend", "version", "devices"),
    "program": ("Program", "LABELS"),
    # the network's output; the loss; the loss with probes added to the hidden states
    # (`Program.hidden_state_grads`); ReLU pre-activations and max-pool inputs
    "model": ("forward", "loss", "loss_probed", "piecewise_inputs"),
    "layers": ("ACTIVATIONS", "activate"),
    "recurrent": (),
    "losses": ("mse", "softmax_cross_entropy", "LOSSES"),
    "optim": OPTIMIZER_API,
}
#: What a backend's kind adds. The NumPy reference writes its backward by hand, so its
#: layers are forward/backward pairs; the frameworks' layers are plain functions that
#: their autodiff differentiates.
CONTRACT_BY_KIND: dict[str, dict[str, tuple[str, ...]]] = {
    "reference": {
        "layers": ("dense_forward", "dense_backward", "conv2d_forward", "conv2d_backward",
                   "maxpool2d_forward", "maxpool2d_backward", "flatten_forward",
                   "flatten_backward", "activate_backward"),
        "recurrent": ("recurrent_forward", "recurrent_backward", "recurrent_forward_probed"),
    },
    "framework": {
        "layers": ("dense", "conv2d", "maxpool2d", "flatten"),
        "recurrent": ("recurrent", "recurrent_probed"),
    },
}
KINDS: dict[str, str] = {"numpy": "reference", "torch": "framework", "jax": "framework",
                         "tensorflow": "framework"}


def contract(backend: str, module: str) -> tuple[str, ...]:
    """The names `impls/<backend>/<module>.py` must define."""
    return CONTRACT[module] + CONTRACT_BY_KIND[KINDS[backend]].get(module, ())


__all__ = ["BACKENDS", "CONTRACT", "DTYPES", "PRECISIONS", "Backend", "BackendError",
           "Program", "contract", "is_installed", "load"]


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
