"""Agreement of every backend with the float64 reference, configuration by configuration:
the library of `nnparity gradcheck` (its command is bench/commands/gradcheck.py).

`plan` lists the configurations: tasks x swept knobs (recurrent cells, MLP
activations) x backends x variants x dtype x devices, each marked skipped or
missing (requested, cannot run) where it will not be checked. The NumPy backend
is additionally checked against central finite differences in float64. With
`steps`, trajectories of N optimiser steps (SGD-momentum and Adam) are compared
too. `config_line` is one configuration's line (its worst tensor and, for
models with ReLU / max-pool, the kink flips and the error after aligning the
reference's masks with the backend's); `write_json` keeps every tensor.

Finite differences of the reference sample entries per tensor on the first
rows of the batch, as `bench.agreement.check.FD_SAMPLING[preset]` says (each
entry costs two forward passes of the whole model in float64).

`run_all` with `jobs` N runs the configurations in N worker processes (each
imports the frameworks once and keeps them; every worker gets `threads / N`
intra-op threads unless `threads` says otherwise) and yields them as they
finish.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import impls
from bench.agreement import check as agreement
from bench.options import (
    DEVICES,
    backend_list,
    check_overrides_known,
    choice_list,
    knob_overrides,
    task_overrides,
)
from bench.results.write import write_text_atomic
from impls import DTYPES
from tasks import TASKS, TaskError, get_task


@dataclass
class Config:
    task: str
    overrides: dict
    backend: str
    variant: str
    dtype: str
    device: str
    rows: list = field(default_factory=list)
    status: str = "ok"  # ok | FAIL | error | skipped | missing (requested, cannot run)
    reason: str = ""


def knob_grid(task_name: str, overrides: dict) -> list[dict]:
    """Every combination of the task's swept knobs that the user did not fix."""
    sweep = {k: v for k, v in TASKS[task_name].sweep.items() if k not in overrides}
    keys = sorted(sweep)
    return [{**overrides, **dict(zip(keys, combo, strict=True))}
            for combo in itertools.product(*(sweep[k] for k in keys))]


def _run_one(cfg: Config, preset: str, steps: int, optimizers: list[str]) -> None:
    try:
        if cfg.backend == "numpy" and cfg.dtype == "float64":
            cfg.rows += agreement.finite_difference_rows(cfg.task, preset, cfg.overrides)
        cfg.rows += agreement.gradient_rows(cfg.task, preset, cfg.overrides, cfg.backend,
                                            cfg.variant, cfg.dtype, cfg.device)
        for opt in optimizers if steps else []:
            cfg.rows += agreement.trajectory_rows(cfg.task, preset, cfg.overrides, cfg.backend,
                                                  cfg.variant, cfg.dtype, cfg.device, opt, steps)
        cfg.status = "ok" if all(r.passed for r in cfg.rows) else "FAIL"
    except Exception as exc:  # one broken configuration must not hide the others
        cfg.status, cfg.reason = "error", f"{type(exc).__name__}: {exc}"


def _worker_init(threads: int) -> None:
    from impls.threads import configure

    configure(threads)


def _run_in_worker(cfg: Config, preset: str, steps: int, optimizers: list[str]) -> Config:
    _run_one(cfg, preset, steps, optimizers)
    return cfg


def run_all(todo: list[Config], preset: str, steps: int, optimizers: list[str],
             jobs: int, threads: int | None):
    """Yield each configuration of `todo` once checked: in order with one job, else as
    the workers finish them (each worker keeps its imported frameworks)."""
    if jobs <= 1 or len(todo) <= 1:
        for cfg in todo:
            _run_one(cfg, preset, steps, optimizers)
            yield cfg
        return
    per_worker = threads or max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: a forked child would inherit this process's thread settings
    # and any framework state; each worker sets its threads before importing one
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(per_worker,)) as pool:
        futures = {pool.submit(_run_in_worker, cfg, preset, steps, optimizers): cfg
                   for cfg in todo}
        for fut in as_completed(futures):
            cfg = futures[fut]
            try:
                done = fut.result()
            except Exception as exc:  # a worker that died: this configuration errored
                cfg.status, cfg.reason = "error", f"{type(exc).__name__}: {exc}"
                done = cfg
            cfg.rows, cfg.status, cfg.reason = done.rows, done.status, done.reason
            yield cfg


def plan(args: argparse.Namespace) -> tuple[list[Config], str]:
    task_names = choice_list(args.tasks, TASKS, "task")
    overrides = knob_overrides(args)
    check_overrides_known(task_names, overrides)
    preset = args.preset or "tiny"
    for name in task_names:  # validates preset and knob values before any work
        get_task(name).config(preset, task_overrides(name, overrides))
    dtypes = choice_list(args.dtypes, DTYPES, "dtype", default=["float64"])
    devices = choice_list(args.devices, DEVICES, "device")
    requested = [v.strip() for part in args.variants or [] for v in part.split(",") if v.strip()]
    offered: set[str] = set()
    configs = []
    for backend in backend_list(args.backends):
        if not impls.is_installed(backend):
            configs.append(Config("*", {}, backend, "*", "*", "*", status="missing",
                                  reason="not installed"))
            continue
        be = impls.load(backend)
        offered.update(be.variants)
        variants = [v for v in be.variants if not requested or v in requested]
        for device in devices:
            if device not in be.devices():
                # a device asked for by name is a requirement; the default "every
                # device" only means "whatever this machine has"
                configs.append(Config("*", {}, backend, "*", "*", device,
                                      status="missing" if args.devices else "skipped",
                                      reason=f"no {device} device"))
                continue
            for dtype, name in itertools.product(dtypes, task_names):
                for knobs in knob_grid(name, task_overrides(name, overrides)):
                    spec = get_task(name).model(get_task(name).config(preset, knobs))
                    for variant in variants:
                        if be.supports(spec, variant):
                            configs.append(Config(name, knobs, backend, variant, dtype, device))
    unknown = [v for v in requested if offered and v not in offered]
    if unknown:
        raise TaskError(f"unknown variant {unknown[0]!r}; choose from {', '.join(sorted(offered))}")
    return configs, preset


_SHORT = {"gradient": "grad", "trajectory": "traj", "finite_difference": "fd"}


def config_line(cfg: Config) -> str:
    label = f"{cfg.task}[{agreement.knobs_label(cfg.overrides)}]" if cfg.overrides else cfg.task
    head = f"{label:<36} {cfg.backend:<10} {cfg.variant:<11} {cfg.dtype:<8} {cfg.device:<5}"
    if not cfg.rows:
        return f"{head} {cfg.status:<7} {cfg.reason}"
    worst = max(cfg.rows, key=lambda r: r.rel_err / r.tolerance)
    failed = sum(not r.passed for r in cfg.rows)
    note = f" ({failed} of {len(cfg.rows)} tensors disagree)" if failed else ""
    grads = [r for r in cfg.rows if r.check == "gradient"]
    flips = max((r.kink_flips or 0 for r in grads), default=0)
    if flips:
        aligned = max((r.aligned_rel_err / r.tolerance for r in grads
                       if r.aligned_rel_err is not None), default=0.0)
        verdict = "agrees" if cfg.status == "ok" else "disagrees"
        layers = next((r.kink_layers for r in grads if r.kink_layers), "")
        note += (f" [{verdict}, {flips} kink flips ({layers}); worst/tol after mask "
                 f"alignment {aligned:.2g}]")
    return (f"{head} {cfg.status:<7} worst {_SHORT[worst.check]:<4} {worst.tensor:<18} "
            f"{worst.rel_err:9.2e} <= {worst.tolerance:.1e}{note}")


def write_json(path: Path, configs: list[Config], preset: str) -> None:
    rows = []
    for cfg in configs:
        if cfg.rows:
            rows += [{**r.to_dict(), "preset": preset, "status": "ok" if r.passed else "FAIL"}
                     for r in cfg.rows]
        else:
            rows.append({"task": cfg.task, "knobs": agreement.knobs_label(cfg.overrides),
                         "backend": cfg.backend, "variant": cfg.variant, "dtype": cfg.dtype,
                         "device": cfg.device, "preset": preset, "status": cfg.status,
                         "reason": cfg.reason})
    write_text_atomic(path, json.dumps(rows, indent=1))
