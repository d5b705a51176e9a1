"""The study's units of work: each builds its models, measures, and returns plain data.

Every job is a module-level function of picklable arguments returning a dict
(lists and floats; trained parameters as NumPy arrays where asked), so `run`
can hand it to a worker process. Models come from the tasks (`rnn_sequence`,
`mlp_regression`) and parameters from `tasks.params.init_params`, so every
backend starts from the same values; frameworks are imported only inside a
job, through `impls.load`. Jobs write nothing and time only the quick speed
measurement that picks the training backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

import impls
from bench.study.config import SATURATION, StudyConfig, setup_activation, setup_parts
from tasks import get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params
from tasks.spec import Dense, ModelSpec

Params = dict[str, np.ndarray]
STUDY_DTYPE = "float32"  # training runs in float32; gradients are measured in float64


# ------------------------------------------------------------------ shared pieces
def rnn_task(cfg: StudyConfig, setup: str, length: int, seed: int):
    """(config, spec, data) of the adding problem for one setup, length and seed."""
    cell = setup_parts(setup)[0]
    task = get_task("rnn_sequence")
    rcfg = task.config("quick", {
        "cell": cell, "activation": setup_activation(setup), "seq_len": length,
        "hidden": cfg.hidden, "layers": cfg.rnn_layers,
        "n_samples": cfg.n_samples, "batch_size": cfg.batch_size, "lr": cfg.learn_lr,
        "seed": seed,
    })
    return rcfg, task.model(rcfg), task.data(rcfg)


def rnn_init(setup: str, spec: ModelSpec, seed: int) -> Params:
    """The canonical initial parameters of a setup (its recurrent init, forget bias)."""
    _, init, forget_bias = setup_parts(setup)
    return init_params(spec, seed, init, forget_bias)


def spectral_radius(setup: str, params: Params) -> float:
    """The spectral radius of the first layer's W_hh (for gated cells the largest over
    its gate blocks' (H, H) matrices)."""
    w = np.asarray(params["rnn0.w_hh"], np.float64)
    h = w.shape[0]
    return float(max(np.max(np.abs(np.linalg.eigvals(w[:, i:i + h])))
                     for i in range(0, w.shape[1], h)))


def mlp_task(cfg: StudyConfig, activation: str, depth: int, seed: int):
    """(config, spec, data) of the diabetes MLP for one activation, depth and seed."""
    task = get_task("mlp_regression")
    mcfg = task.config("quick", {
        "activation": activation, "depth": depth, "hidden": cfg.mlp_hidden,
        "lr": cfg.depth_lr, "seed": seed,
    })
    return mcfg, task.model(mcfg), task.data(mcfg)


def build(backend: str, spec: ModelSpec, params: Params, dtype: str, lr: float):
    be = impls.load(backend)
    return be.build(spec, params, variant=be.variants[0], dtype=dtype, device="cpu",
                    optimizer=OptimizerSpec("adam", lr))


def train(program, data, steps: int, batch_size: int, seed: int, every: int = 0,
          evaluate: Callable[[], float] | None = None) -> tuple[np.ndarray, list[list[float]]]:
    """`steps` optimiser steps on shuffled batches (the batching of `nnparity train`);
    the losses, and [step, evaluate()] at step 0 and every `every` steps when given."""
    rng = np.random.default_rng(seed + 1)
    losses: list[float] = []
    pending: list = []
    curve = [[0, evaluate()]] if evaluate and every else []

    def flush() -> None:
        losses.extend(float(program.to_numpy(v)) for v in pending)
        pending.clear()

    while len(losses) + len(pending) < steps:
        for x, y in data.epoch_batches(rng, min(batch_size, len(data.x_train))):
            pending.append(program.step(program.put(x), program.put(y)))
            done = len(losses) + len(pending)
            if evaluate and every and done % every == 0:
                flush()
                curve.append([done, evaluate()])
            if done == steps:
                break
        flush()
    return np.asarray(losses), curve


def state_norms(grads: dict[str, np.ndarray], cell: str) -> dict[str, list[float]]:
    """Per layer and step: the norm of each sample's own dL/dh_t, averaged over the batch.

    `grads` are of the batch-mean loss, so a sample's own gradient is N times its slice.
    An LSTM's state is (h_t, c_t): its layer gets that norm under its name and the
    norm of the h_t half alone under `<layer> h`.
    """
    out = {}
    for layer, g in grads.items():
        g = np.asarray(g, np.float64)
        out[layer] = (g.shape[0] * np.linalg.norm(g, axis=-1).mean(axis=0)).tolist()
        if cell == "lstm":
            h = g[..., : g.shape[-1] // 2]
            out[f"{layer} h"] = (g.shape[0] * np.linalg.norm(h, axis=-1).mean(axis=0)).tolist()
    return out


def dense_layers(spec: ModelSpec) -> list[str]:
    return [layer.name for layer in spec.layers if isinstance(layer, Dense)]


def weight_grad_norms(spec: ModelSpec, grads: Params) -> list[float]:
    return [float(np.linalg.norm(grads[f"{n}.weight"])) for n in dense_layers(spec)]


def unit_health(spec: ModelSpec, params: Params, x: np.ndarray) -> list[dict[str, float]]:
    """Per hidden layer: share of saturated (sample, unit) pairs (sigmoid/tanh derivative
    below SATURATION of its maximum), for relu the share of units dead on every sample,
    and the mean |activation derivative| over (sample, unit) pairs (sigmoid's is at most
    1/4, tanh's and relu's at most 1)."""
    out = []
    for layer in spec.layers[:-1]:
        z = x @ params[f"{layer.name}.weight"] + params[f"{layer.name}.bias"]
        if layer.activation == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-z))
            d = x * (1 - x)
            out.append({"saturated": float(np.mean(d < SATURATION * 0.25))})
        elif layer.activation == "tanh":
            x = np.tanh(z)
            d = 1 - x * x
            out.append({"saturated": float(np.mean(d < SATURATION))})
        else:
            x = np.maximum(z, 0.0)
            d = (z > 0).astype(np.float64)
            out.append({"saturated": float(np.mean(z <= 0)),
                        "dead": float(np.mean(np.all(z <= 0, axis=0)))})
        out[-1]["mean_deriv"] = float(np.mean(np.abs(d)))
    return out


# ------------------------------------------------------------------------ jobs
def speed(cfg: StudyConfig, cell: str, backend: str) -> dict[str, Any]:
    """Seconds per float32 training step of `cell` on `backend` (after two warm-up steps),
    and the seconds of building the program and those warm-up steps (a compiler's start-up,
    paid again by every training job)."""
    start = time.perf_counter()
    _, spec, data = rnn_task(cfg, cell, cfg.speed_length, 0)
    program = build(backend, spec, rnn_init(cell, spec, 0), STUDY_DTYPE, cfg.learn_lr)
    x, y = program.put(data.x_train[: cfg.batch_size]), program.put(data.y_train[: cfg.batch_size])
    for _ in range(2):
        program.to_numpy(program.step(x, y))
    warmup = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while steps < 5 and (steps == 0 or time.perf_counter() - start < cfg.speed_seconds):
        program.to_numpy(program.step(x, y))
        steps += 1
    return {"cell": cell, "backend": backend, "steps": steps, "warmup_seconds": warmup,
            "seconds_per_step": (time.perf_counter() - start) / steps}


def job_seconds(cfg: StudyConfig, speed_row: dict[str, Any]) -> float:
    """A training job's estimated seconds on that backend: its start-up, then the budget."""
    return speed_row.get("warmup_seconds", 0.0) + cfg.learn_steps * speed_row["seconds_per_step"]


def learn(cfg: StudyConfig, setup: str, length: int, seed: int, backend: str, steps: int,
          keep_params: bool) -> dict[str, Any]:
    """Train on the adding problem for `steps`; the held-out MSE every `cfg.eval_every`
    steps (from step 0), the spectral radius of W_hh at init (and the trained params)."""
    rcfg, spec, data = rnn_task(cfg, setup, length, seed)
    init = rnn_init(setup, spec, seed)
    program = build(backend, spec, init, STUDY_DTYPE, cfg.learn_lr)
    x_test = program.put(data.x_test)

    def held_out_mse() -> float:
        pred = np.asarray(program.to_numpy(program.forward(x_test)), np.float64)
        return float(np.mean((pred - data.y_test) ** 2))

    start = time.perf_counter()
    losses, curve = train(program, data, steps, rcfg.batch_size, seed, cfg.eval_every,
                          held_out_mse)
    if curve[-1][0] != steps:
        curve.append([steps, held_out_mse()])
    cell, init_name, forget_bias = setup_parts(setup)
    result: dict[str, Any] = {
        "setup": setup, "cell": cell, "init": init_name,
        "forget_bias": forget_bias if cell == "lstm" else None,
        "length": length, "seed": seed, "backend": backend,
        "steps": [int(c[0]) for c in curve], "mse": [c[1] for c in curve],
        "test_mse": curve[-1][1],
        "final_loss": float(losses[-max(1, len(losses) // 10):].mean()),
        "radius": spectral_radius(setup, init),
        "seconds": time.perf_counter() - start,
    }
    if keep_params:
        result["params"] = program.params()
    return result


def time_grads(cfg: StudyConfig, backend: str, dtype: str, setup: str, length: int, seed: int,
               states: dict[str, Params]) -> dict[str, Any]:
    """Per-step ||dL/dh_t|| on a held-out batch, for each parameter state given."""
    _, spec, data = rnn_task(cfg, setup, length, seed)
    cell = setup_parts(setup)[0]
    x, y = data.x_test[: cfg.eval_batch], data.y_test[: cfg.eval_batch]
    curves = {}
    for state, params in states.items():
        program = build(backend, spec, params, dtype, cfg.learn_lr)
        curves[state] = state_norms(program.hidden_state_grads(program.put(x), program.put(y)),
                                    cell)
    return {"backend": backend, "dtype": dtype, "setup": setup, "cell": cell, "length": length,
            "seed": seed, "curves": curves}


def depth(cfg: StudyConfig, activation: str, n_layers: int, seed: int,
          keep_params: bool) -> dict[str, Any]:
    """Weight-gradient norms and unit health of one MLP at init and after training (NumPy)."""
    mcfg, spec, data = mlp_task(cfg, activation, n_layers, seed)
    init = init_params(spec, seed)
    ref = impls.load("numpy")
    program = build("numpy", spec, init, STUDY_DTYPE, cfg.depth_lr)
    metric = get_task("mlp_regression").metric
    init_r2 = float(metric(program.to_numpy(program.forward(program.put(data.x_test))),
                           data.y_test))
    train(program, data, cfg.depth_steps, mcfg.batch_size, seed)
    trained = {k: v.astype(np.float64) for k, v in program.params().items()}
    pred = program.to_numpy(program.forward(program.put(data.x_test)))
    states = {"init": init, "trained": trained}
    result: dict[str, Any] = {
        "activation": activation, "depth": n_layers, "seed": seed, "layers": dense_layers(spec),
        "test_r2": float(metric(pred, data.y_test)), "init_r2": init_r2,
    }
    for state, params in states.items():
        p64 = ref.build(spec, params, variant=ref.variants[0],
                        dtype="float64", device="cpu", optimizer=OptimizerSpec("adam", 1e-3))
        _, grads = p64.loss_and_grads(p64.put(data.x_train), p64.put(data.y_train))
        result[state] = {"grad_norms": weight_grad_norms(spec, p64.grads_to_canonical(grads)),
                         "units": unit_health(spec, params, data.x_train)}
    if keep_params:
        result["params"] = states
    return result


def depth_grads(cfg: StudyConfig, backend: str, dtype: str, activation: str, n_layers: int,
                seed: int, states: dict[str, Params]) -> dict[str, Any]:
    """Per layer weight-gradient norms on `backend` at each parameter state given."""
    _, spec, data = mlp_task(cfg, activation, n_layers, seed)
    norms = {}
    for state, params in states.items():
        program = build(backend, spec, params, dtype, cfg.depth_lr)
        _, grads = program.loss_and_grads(program.put(data.x_train), program.put(data.y_train))
        norms[state] = weight_grad_norms(spec, program.grads_to_canonical(grads))
    return {"backend": backend, "dtype": dtype, "activation": activation, "depth": n_layers,
            "seed": seed, "grad_norms": norms}
