"""The study's scheduler: its jobs over worker processes, the journal, the raw data files.

Phase 1 times one short training run per cell and backend and picks the
fastest backend per cell for training; phase 2 trains (the adding problem
on the chosen backends, the subset repeated on every backend, the MLPs);
phase 3 measures gradients at initial and trained parameters, the NumPy
reference for every seed and every other backend for the first seed. A
progress line with an ETA goes to stderr. Raw data goes to `study.json` (and
CSV tables beside it), from which `report` rebuilds REPORT.md and the figures.
The command (`bench.commands.study`) parses the options and calls `execute`.
This module computes no statistics itself (`summary` does) and imports no
framework (jobs do, in the workers).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.options import InputError
from bench.progress import ProgressLine
from bench.results.paths import RUNS
from bench.results.write import write_text_atomic
from bench.study import jobs
from bench.study.config import StudyConfig
from tasks.params import init_params

RAW = "study.json"
#: the finished jobs of a study in progress (see `Journal`); gone once study.json is written
JOURNAL = ".study-jobs.jsonl"
DEFAULT_OUT = RUNS / "study"

Job = tuple[float, Callable[..., dict], tuple]  # (estimated cost, function, arguments)


# ------------------------------------------------------------------- scheduling
class Inline(Executor):
    """This process as the pool (`--jobs 1`): `run_jobs` runs each job itself, in turn."""


def worker_init() -> None:
    from impls.threads import configure

    configure(1)


def _encode(value: Any) -> Any:
    """A job's result as JSON (arrays with their dtype and shape, exactly)."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype),
                "shape": list(value.shape)}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def job_key(job: Job) -> str:
    """What identifies a job across runs: its function and its plain arguments
    (the config is the journal's, the parameter states follow from earlier jobs)."""
    _, fn, args = job
    return fn.__name__ + json.dumps([a for a in args if isinstance(a, str | int | float)])


class Journal:
    """Every finished job, appended (and flushed) as it finishes, so an interrupted
    study keeps what it did: `JOURNAL` in the output directory, one JSON line per
    job after a header naming the study (config, backends, train backend). A rerun
    into the same directory resumes from it; a different study there is refused."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.done = path, {}
        header = json.loads(json.dumps(header))  # tuples as lists, as read back
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                found = json.loads(lines[0]) if lines else None
            except ValueError:
                found = None
            if found != header:
                raise InputError(f"{path.parent} holds an interrupted study of another "
                                 f"configuration ({path.name}); choose another --out, or "
                                 f"remove {path} to start this one there")
            for line in lines[1:]:
                try:  # a line cut short by the interruption is run again
                    entry = json.loads(line)
                    self.done[entry["key"]] = entry["result"]
                except (ValueError, KeyError, TypeError):
                    continue
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(header) + "\n", encoding="utf-8")

    def get(self, job: Job) -> dict | None:
        found = self.done.get(job_key(job))
        return None if found is None else _decode(found)

    def record(self, job: Job, result: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": job_key(job), "result": _encode(result)}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def run_jobs(pool: Executor, todo: list[Job], progress: ProgressLine,
             journal: Journal | None = None) -> list[dict]:
    """Run `todo` (largest first, so the pool ends evenly) and return results in order;
    jobs the journal holds are not run again, and each finished job is journalled."""
    order = sorted(range(len(todo)), key=lambda i: -todo[i][0])
    results: list[dict] = [{}] * len(todo)
    for i in list(order):
        kept = journal.get(todo[i]) if journal else None
        if kept is not None:
            results[i] = kept
            progress.advance(weight=todo[i][0])
            order.remove(i)

    def finished(i: int, result: dict) -> None:
        results[i] = result
        if journal:
            journal.record(todo[i], result)
        progress.advance(weight=todo[i][0])

    if isinstance(pool, Inline):  # one at a time, so the progress line moves per job
        for i in order:
            finished(i, todo[i][1](*todo[i][2]))
        return results
    futures = {i: pool.submit(todo[i][1], *todo[i][2]) for i in order}
    pending = dict(futures)
    while pending:
        for i, fut in list(pending.items()):
            if fut.done():
                finished(i, fut.result())
                del pending[i]
        if pending:
            time.sleep(0.05)
    return results


# ------------------------------------------------------------------- the study
_CELL_COST = {"rnn": 1.0, "lstm": 2.5, "gru": 3.0}  # relative cost per step, measured roughly


def _learn_cost(cfg: StudyConfig, cell: str, length: int) -> float:
    return 2.0 + cfg.learn_steps * length * _CELL_COST[cell] * 2e-4


def _time_cost(length: int) -> float:
    return 1.0 + length * 0.01


def plan_cost(cfg: StudyConfig, backends: list[str]) -> float:
    """The whole study's estimated cost, in the units the jobs are weighted in."""
    lengths = sorted(set(cfg.lengths) | set(cfg.time_lengths))
    others = len(backends) - 1
    cost = 3.0 * len(cfg.cells) * len(backends) if others else 0.0
    cost += sum(_learn_cost(cfg, c, t) for c in cfg.cells for t in lengths) * len(cfg.seeds)
    cost += sum(_learn_cost(cfg, c, t) for c in cfg.cells for t in cfg.repeat_lengths) * others
    cost += len(cfg.activations) * sum(0.5 + cfg.depth_steps * d * 1e-3 for d in cfg.depths) \
        * len(cfg.seeds)
    cost += sum(_time_cost(t) for t in cfg.time_lengths) * len(cfg.cells) * len(cfg.seeds)
    cost += sum(_time_cost(t) * 4 for t in cfg.time_lengths) * len(cfg.cells) * 2 * others
    cost += len(cfg.activations) * len(cfg.depths) * 2.0 * 2 * others
    return cost


def run_study(cfg: StudyConfig, backends: list[str], pool: Executor,
              progress: ProgressLine, train_backend: str | None = None,
              journal: Journal | None = None) -> dict[str, Any]:
    """Every measurement of the study as plain data (see the module doc for the phases)."""
    others = [b for b in backends if b != "numpy"]
    # -- phase 1: the training backend per cell, by a quick measurement
    speeds: list[dict] = []
    if len(backends) > 1 and train_backend is None:
        speeds = run_jobs(pool, [(3.0, jobs.speed, (cfg, c, b))
                                 for c in cfg.cells for b in backends], progress, journal)
    chosen = {}
    for cell in cfg.cells:
        rows = [r for r in speeds if r["cell"] == cell]
        chosen[cell] = min(rows, key=lambda r: r["seconds_per_step"])["backend"] if rows \
            else train_backend or backends[0]
    # -- phase 2: training
    lengths = sorted(set(cfg.lengths) | set(cfg.time_lengths))
    seed0 = cfg.seeds[0]
    todo: list[Job] = []
    for cell in cfg.cells:
        for length in lengths:
            for seed in cfg.seeds:
                todo.append((_learn_cost(cfg, cell, length), jobs.learn,
                             (cfg, cell, length, seed, chosen[cell], length in cfg.time_lengths)))
        for length in cfg.repeat_lengths:
            for b in backends:
                if b != chosen[cell]:
                    todo.append((_learn_cost(cfg, cell, length), jobs.learn,
                                 (cfg, cell, length, seed0, b, False)))
    for act in cfg.activations:
        for d in cfg.depths:
            for seed in cfg.seeds:
                todo.append((0.5 + cfg.depth_steps * d * 1e-3, jobs.depth,
                             (cfg, act, d, seed, seed == seed0)))
    trained = run_jobs(pool, todo, progress, journal)
    learn = [r for r in trained if "test_mse" in r]
    depth = [r for r in trained if "grad_norms" not in r and "activation" in r]
    # -- phase 3: gradients at initial and trained parameters
    todo = []
    for r in learn:
        if "params" not in r:
            continue
        cell, length, seed = r["cell"], r["length"], r["seed"]
        _, spec, _ = jobs.rnn_task(cfg, cell, length, seed)
        states = {"init": init_params(spec, seed), "trained": r.pop("params")}
        todo.append((_time_cost(length), jobs.time_grads,
                     (cfg, "numpy", "float64", cell, length, seed, states)))
        if seed == seed0:
            for b in others:
                for dtype in cfg.agreement_dtypes:
                    todo.append((_time_cost(length) * 4, jobs.time_grads,
                                 (cfg, b, dtype, cell, length, seed, states)))
    for r in depth:
        if "params" not in r:
            continue
        states = r.pop("params")
        for b in others:
            for dtype in cfg.agreement_dtypes:
                todo.append((2.0, jobs.depth_grads,
                             (cfg, b, dtype, r["activation"], r["depth"], r["seed"], states)))
    grads = run_jobs(pool, todo, progress, journal)
    time_rows = [r for r in grads if "curves" in r]
    return {
        "config": cfg.to_dict(),
        "backends": backends,
        "speed": speeds,
        "train_backend": chosen,
        "learn": learn,
        "time": [r for r in time_rows if r["backend"] == "numpy"],
        "time_agreement": [r for r in time_rows if r["backend"] != "numpy"],
        "depth": depth,
        "depth_agreement": [r for r in grads if "grad_norms" in r],
    }


def _csv(header: list[str], rows: list[list]) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in [header, *rows]) + "\n"


def write_raw(out: Path, data: dict[str, Any]) -> None:
    """study.json (the record the report reads) and flat CSV tables of it."""
    write_text_atomic(out / RAW, json.dumps(data, indent=1) + "\n")
    rows = [[r["cell"], r["length"], r["seed"], state, layer, t + 1, f"{g:.6e}"]
            for r in data["time"] for state, layers in r["curves"].items()
            for layer, curve in layers.items() for t, g in enumerate(curve)]
    write_text_atomic(out / "time.csv", _csv(
        ["cell", "length", "seed", "state", "layer", "t", "grad_norm"], rows))
    rows = [[r["activation"], r["depth"], r["seed"], state, layer,
             f"{r[state]['grad_norms'][i]:.6e}",
             f"{r[state]['units'][i]['saturated']:.4f}" if i < len(r[state]["units"]) else "",
             f"{r[state]['units'][i].get('dead', '')}" if i < len(r[state]["units"]) else ""]
            for r in data["depth"] for state in ("init", "trained")
            for i, layer in enumerate(r["layers"])]
    write_text_atomic(out / "depth.csv", _csv(
        ["activation", "depth", "seed", "state", "layer", "weight_grad_norm", "saturated",
         "dead"], rows))
    rows = [[r["cell"], r["length"], r["seed"], r["backend"], f"{r['test_mse']:.6f}",
             f"{r['seconds']:.1f}"] for r in data["learn"]]
    write_text_atomic(out / "learn.csv", _csv(
        ["cell", "length", "seed", "backend", "test_mse", "seconds"], rows))


def execute(cfg: StudyConfig, backends: list[str], n_jobs: int, progress: ProgressLine,
            train_backend: str | None, journal: Journal | None) -> dict[str, Any]:
    """`run_study` in this process (`n_jobs` 1) or over `n_jobs` spawned workers."""
    if n_jobs == 1:
        return run_study(cfg, backends, Inline(), progress, train_backend, journal)
    ctx = multiprocessing.get_context("spawn")  # a forked JAX/TF runtime is not safe
    with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=worker_init) as pool:
        return run_study(cfg, backends, pool, progress, train_backend, journal)
