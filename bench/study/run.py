"""The study's scheduler: its jobs over worker processes, the journal, the raw data files.

Phase 1 times one short training run per cell and backend and picks the
fastest backend per cell for training (start-up plus the budget's steps);
phase 2 trains (every setup and length on its cell's backend and every seed,
the repeats on the other backends, the MLPs); phase 3 measures gradients at
initial and trained parameters, the NumPy reference for every seed and every
other backend for the first seed. Jobs are tagged by kind (`Job.kind`). A
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
from typing import Any, NamedTuple

import numpy as np

from bench.options import InputError
from bench.progress import ProgressLine
from bench.results.paths import RUNS
from bench.results.write import write_text_atomic
from bench.study import jobs
from bench.study.config import CELLS, StudyConfig, setup_parts

RAW = "study.json"
#: the learning curves, one row per (run, evaluation step); the report's "learns within"
#: statements follow from it
LEARN_CSV = "learn.csv"
LEARN_COLUMNS = ["setup", "cell", "init", "forget_bias", "length", "seed", "backend", "step",
                 "test_mse"]
#: the finished jobs of a study in progress (see `Journal`); gone once study.json is written
JOURNAL = ".study-jobs.jsonl"
DEFAULT_OUT = RUNS / "study"

class Job(NamedTuple):
    """One unit of work: what its result is (`kind`, the key `run_study` files it under),
    its estimated cost (the progress line's weight), and the call."""

    kind: str
    cost: float
    fn: Callable[..., dict]
    args: tuple


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
    return job.fn.__name__ + json.dumps([a for a in job.args
                                         if isinstance(a, str | int | float)])


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
             journal: Journal | None = None) -> dict[str, list[dict]]:
    """Run `todo` (largest first, so the pool ends evenly); their results by kind, each
    list in the order of `todo`. Jobs the journal holds are not run again, and each
    finished job is journalled."""
    order = sorted(range(len(todo)), key=lambda i: -todo[i].cost)
    results: list[dict] = [{}] * len(todo)
    for i in list(order):
        kept = journal.get(todo[i]) if journal else None
        if kept is not None:
            results[i] = kept
            progress.advance(weight=todo[i].cost)
            order.remove(i)

    def finished(i: int, result: dict) -> None:
        results[i] = result
        if journal:
            journal.record(todo[i], result)
        progress.advance(weight=todo[i].cost)

    if isinstance(pool, Inline):  # one at a time, so the progress line moves per job
        for i in order:
            finished(i, todo[i].fn(*todo[i].args))
    else:
        pending = {i: pool.submit(todo[i].fn, *todo[i].args) for i in order}
        while pending:
            for i, fut in list(pending.items()):
                if fut.done():
                    finished(i, fut.result())
                    del pending[i]
            if pending:
                time.sleep(0.05)
    by_kind: dict[str, list[dict]] = {}
    for job, result in zip(todo, results, strict=True):
        by_kind.setdefault(job.kind, []).append(result)
    return by_kind


# ------------------------------------------------------------------- the study
_CELL_COST = {"rnn": 1.0, "lstm": 2.5, "gru": 3.0}  # relative cost per step, measured roughly


def _learn_cost(cell: str, length: int, steps: int) -> float:
    return 2.0 + steps * length * _CELL_COST[cell] * 2e-4


def _time_cost(length: int) -> float:
    return 1.0 + length * 0.01


def _depth_cost(cfg: StudyConfig, depth: int) -> float:
    return 0.5 + cfg.depth_steps * depth * 1e-3


def learn_runs(cfg: StudyConfig) -> list[tuple[str, int]]:
    """Every (setup, length) trained: each setup at `lengths`, the paper's at its own."""
    runs = [(s, t) for s in cfg.setups for t in sorted(set(cfg.lengths) | set(cfg.time_lengths))]
    runs += [(s, t) for s in cfg.paper_setups for t in cfg.paper_lengths if (s, t) not in runs]
    return runs


def repeat_runs(cfg: StudyConfig) -> list[tuple[str, int]]:
    """The (setup, length) pairs whose training is repeated on every backend."""
    return [(s, t) for s, t in learn_runs(cfg) if t in cfg.repeat_lengths
            and (s in CELLS or t in cfg.paper_lengths)]


def speed_jobs(cfg: StudyConfig, backends: list[str]) -> list[Job]:
    return [Job("speed", 3.0, jobs.speed, (cfg, c, b)) for c in cfg.cells for b in backends]


def training_jobs(cfg: StudyConfig, backends: list[str], chosen: dict[str, str]) -> list[Job]:
    """Phase 2: every setup and length on its cell's training backend and every seed
    (keeping the params where gradients are measured after training), the repeats on
    the other backends, and the MLPs."""
    todo = []
    for setup, length in learn_runs(cfg):
        cell = setup_parts(setup)[0]
        cost = _learn_cost(cell, length, cfg.learn_steps)
        for seed in cfg.seeds:
            todo.append(Job("learn", cost, jobs.learn, (
                cfg, setup, length, seed, chosen[cell], cfg.learn_steps,
                length in cfg.time_lengths)))
    for setup, length in repeat_runs(cfg):
        cell = setup_parts(setup)[0]
        for b in backends:
            if b != chosen[cell]:
                todo.append(Job("repeat", _learn_cost(cell, length, cfg.repeat_steps),
                                jobs.learn, (cfg, setup, length, cfg.seeds[0], b,
                                             cfg.repeat_steps, False)))
    for act in cfg.activations:
        for d in cfg.depths:
            for seed in cfg.seeds:
                todo.append(Job("depth", _depth_cost(cfg, d), jobs.depth,
                                (cfg, act, d, seed, seed == cfg.seeds[0])))
    return todo


def gradient_jobs(cfg: StudyConfig, backends: list[str], learn: list[dict],
                  depth: list[dict]) -> list[Job]:
    """Phase 3: dL/dh_t at init and trained params by the reference for every seed and by
    every other backend for the first; the MLPs' weight gradients on every other backend.
    Takes the trained params out of the phase-2 results."""
    others = [b for b in backends if b != "numpy"]
    todo = []
    for r in learn:
        if "params" not in r:
            continue
        setup, length, seed = r["setup"], r["length"], r["seed"]
        _, spec, _ = jobs.rnn_task(cfg, setup, length, seed)
        states = {"init": jobs.rnn_init(setup, spec, seed), "trained": r.pop("params")}
        todo.append(Job("time", _time_cost(length), jobs.time_grads,
                        (cfg, "numpy", "float64", setup, length, seed, states)))
        if seed == cfg.seeds[0]:
            todo += [Job("time_agreement", _time_cost(length) * 4, jobs.time_grads,
                         (cfg, b, dtype, setup, length, seed, states))
                     for b in others for dtype in cfg.agreement_dtypes]
    for r in depth:
        if "params" in r:
            states = r.pop("params")
            todo += [Job("depth_agreement", 2.0, jobs.depth_grads,
                         (cfg, b, dtype, r["activation"], r["depth"], r["seed"], states))
                     for b in others for dtype in cfg.agreement_dtypes]
    return todo


def plan_cost(cfg: StudyConfig, backends: list[str]) -> float:
    """The whole study's estimated cost, in the units the jobs are weighted in."""
    chosen = {c: backends[0] for c in cfg.cells}
    others = len(backends) - 1
    cost = 3.0 * len(cfg.cells) * len(backends) if others else 0.0
    cost += sum(j.cost for j in training_jobs(cfg, backends, chosen))
    timed = [(s, t) for s, t in learn_runs(cfg) if t in cfg.time_lengths]
    cost += sum(_time_cost(t) for _, t in timed) * (len(cfg.seeds)
                                                    + 4 * others * len(cfg.agreement_dtypes))
    cost += len(cfg.activations) * len(cfg.depths) * 2.0 * others * len(cfg.agreement_dtypes)
    return cost


def choose_backends(cfg: StudyConfig, speeds: list[dict], fallback: str) -> dict[str, str]:
    """Per cell, the backend with the least estimated training job (start-up + budget);
    `fallback` for a cell that was not measured."""
    chosen = {}
    for cell in cfg.cells:
        rows = [r for r in speeds if r["cell"] == cell]
        chosen[cell] = min(rows, key=lambda r: jobs.job_seconds(cfg, r))["backend"] if rows \
            else fallback
    return chosen


def run_study(cfg: StudyConfig, backends: list[str], pool: Executor,
              progress: ProgressLine, train_backend: str | None = None,
              journal: Journal | None = None) -> dict[str, Any]:
    """Every measurement of the study as plain data (see the module doc for the phases)."""
    # -- phase 1: the training backend per cell, by a quick measurement
    speeds: list[dict] = []
    if len(backends) > 1 and train_backend is None:
        speeds = run_jobs(pool, speed_jobs(cfg, backends), progress, journal)["speed"]
    chosen = choose_backends(cfg, speeds, train_backend or backends[0])
    # -- phase 2: training; phase 3: gradients at initial and trained parameters
    trained = run_jobs(pool, training_jobs(cfg, backends, chosen), progress, journal)
    learn, depth = trained.get("learn", []), trained.get("depth", [])
    grads = run_jobs(pool, gradient_jobs(cfg, backends, learn, depth), progress, journal)
    return {
        "config": cfg.to_dict(),
        "backends": backends,
        "speed": speeds,
        "train_backend": chosen,
        "learn": learn + trained.get("repeat", []),
        "time": grads.get("time", []),
        "time_agreement": grads.get("time_agreement", []),
        "depth": depth,
        "depth_agreement": grads.get("depth_agreement", []),
    }


def _csv(header: list[str], rows: list[list]) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in [header, *rows]) + "\n"


def write_raw(out: Path, data: dict[str, Any]) -> None:
    """study.json (the record the report reads) and flat CSV tables of it."""
    write_text_atomic(out / RAW, json.dumps(data, indent=1) + "\n")
    rows = [[r["setup"], r["length"], r["seed"], state, layer, t + 1, f"{g:.6e}"]
            for r in data["time"] for state, layers in r["curves"].items()
            for layer, curve in layers.items() for t, g in enumerate(curve)]
    write_text_atomic(out / "time.csv", _csv(
        ["setup", "length", "seed", "state", "layer", "t", "grad_norm"], rows))
    rows = [[r["activation"], r["depth"], r["seed"], state, layer,
             f"{r[state]['grad_norms'][i]:.6e}",
             f"{r[state]['units'][i]['saturated']:.4f}" if i < len(r[state]["units"]) else "",
             f"{r[state]['units'][i].get('dead', '')}" if i < len(r[state]["units"]) else "",
             f"{r[state]['units'][i]['mean_deriv']:.4f}" if i < len(r[state]["units"]) else ""]
            for r in data["depth"] for state in ("init", "trained")
            for i, layer in enumerate(r["layers"])]
    write_text_atomic(out / "depth.csv", _csv(
        ["activation", "depth", "seed", "state", "layer", "weight_grad_norm", "saturated",
         "dead", "mean_abs_deriv"], rows))
    rows = [[r["setup"], r["cell"], r["init"],
             "" if r["forget_bias"] is None else f"{r['forget_bias']:g}", r["length"], r["seed"],
             r["backend"], step, f"{mse:.6f}"]
            for r in data["learn"] for step, mse in zip(r["steps"], r["mse"], strict=True)]
    write_text_atomic(out / LEARN_CSV, _csv(LEARN_COLUMNS, rows))


def execute(cfg: StudyConfig, backends: list[str], n_jobs: int, progress: ProgressLine,
            train_backend: str | None, journal: Journal | None) -> dict[str, Any]:
    """`run_study` in this process (`n_jobs` 1) or over `n_jobs` spawned workers."""
    if n_jobs == 1:
        return run_study(cfg, backends, Inline(), progress, train_backend, journal)
    ctx = multiprocessing.get_context("spawn")  # a forked JAX/TF runtime is not safe
    with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=worker_init) as pool:
        return run_study(cfg, backends, pool, progress, train_backend, journal)
