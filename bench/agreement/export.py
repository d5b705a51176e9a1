"""One task's parameters, batch and float64 reference gradients as arrays, and the .npz
they are written to: the library of `nnparity export` (bench/commands/export.py).

A single .npz (docs/design.md §6): `param/<name>` and `grad/<name>` in
canonical layout, `x`, `y`, `loss` and `meta` (a JSON string describing the
model), so anyone can check our reference with their own framework code. The
file is written atomically. Imports no framework.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

import impls
from bench.results.write import write_text_atomic
from tasks import get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params
from tasks.spec import layer_to_dict


def export_arrays(task_name: str, preset: str, overrides: dict, seed: int | None) -> dict:
    task = get_task(task_name)
    if seed is not None:
        overrides = {**overrides, "seed": seed}
    cfg = task.config(preset, overrides)
    spec = task.model(cfg)
    params = init_params(spec, cfg.seed)
    x, y = task.data(cfg).batch(0, cfg.batch_size)
    program = impls.load("numpy").build(spec, params, variant="reference", dtype="float64",
                                        device="cpu",
                                        optimizer=OptimizerSpec(cfg.optimizer, cfg.lr))
    loss, grads = program.loss_and_grads(x, y)
    grads = program.grads_to_canonical(grads)
    meta = {
        "task": task_name, "preset": preset, "seed": cfg.seed, "dtype": "float64",
        "loss": spec.loss, "input_shape": list(spec.input_shape),
        "layers": [layer_to_dict(layer) for layer in spec.layers],
        "knobs": {k: v for k, v in vars(cfg).items() if not isinstance(v, tuple)},
    }
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"grad/{k}": v for k, v in grads.items()})
    arrays.update(x=x, y=y, loss=np.asarray(float(loss)), meta=np.asarray(json.dumps(meta)))
    return arrays


def write_npz_atomic(path: Path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_text_atomic(path, buffer.getvalue())


