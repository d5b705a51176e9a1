"""`nnparity settings`: every speed setting toggled alone, timed against the default and
checked against the float64 reference (issue 24; the library is `bench.settings`).

For the selected cells (by default one MLP, the CNN and the LSTM, forward and step, in
each backend's default variant) it times the default and each setting the backend
declares (`impls.settings`), interleaved in rounds of independent worker processes,
checks each setting's gradients with gradcheck's tolerance model, and writes
settings.json, SETTINGS.md and settings.png into the sweep directory. `--list` shows
the declarations and which are n/a here; `--report DIR` redraws a sweep's report from
its settings.json (read as untrusted input). Exit codes: 0 done, 1 an item errored or
a default failed agreement (a setting that fails agreement is a finding, shown, not a
failure), 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import impls
from bench.options import (
    InputError,
    add_list_option,
    add_task_options,
    choice_list,
    int_range,
    knob_overrides,
    positive_float,
    positive_int,
)
from bench.results.schema import STEADY_PHASES
from bench.settings import plan as plans
from bench.settings import report, results
from bench.settings.sweep import run_sweep
from bench.timing import environment
from bench.timing.matrix import PLANS
from bench.timing.runner import RunDirectory
from impls.settings import SETTINGS
from tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_options(parser, many=True)
    arg = parser.add_argument
    add_list_option(parser, "backends", f"comma list of {', '.join(impls.BACKENDS)}")
    add_list_option(parser, "settings",
                    "comma list of setting names (default: every declared one that applies; "
                    "see --list); a named setting is timed even where the preset leaves its "
                    "slow compile out")
    add_list_option(parser, "variants",
                    "cell variants the settings start from (default: each backend's default, "
                    "e.g. torch eager, jax jit)")
    add_list_option(parser, "devices", "comma list of cpu, cuda (default: all present)")
    add_list_option(parser, "phases",
                    f"comma list of {', '.join(STEADY_PHASES)} (default forward,step)")
    arg("-k", dest="keyword", default=None, metavar="EXPR",
        help="pytest-style expression over item ids (cell id @ setting), "
             "e.g. 'cnn and compile'; a cell keeps its default")
    arg("--out", default=None, help="sweep directory (default results/runs/<timestamp>)")
    arg("--threads", type=int_range(1, 4096), default=None,
        help="the default's intra-op threads (default: all cores)")
    arg("--rounds", type=positive_int, default=None,
        help="independent worker processes per environment (default: the preset's)")
    arg("--budget", type=positive_float, default=None,
        help="timed seconds per (cell, setting), split over the rounds (default: the "
             "preset's, 0.3 for standard); warm-up and compiles come on top")
    arg("--time-limit", type=positive_float, default=None, metavar="MIN",
        help="minutes for the whole sweep: rounds after the first start only while the "
             "previous round's duration still fits (fewer rounds: wider intervals; the "
             "first round, with every agreement check, always runs)")
    arg("--timeout", type=positive_float, default=None,
        help="seconds per worker process before it is killed (default: the preset's)")
    arg("--seed", type=int_range(0, 2**31 - 1), default=0,
        help="seed of the recorded random orders")
    arg("--no-gradcheck", action="store_true",
        help="skip the agreement checks (every setting is then 'not checked', never safe)")
    arg("--list", action="store_true", help="print the declared settings and exit")
    arg("--report", default=None, metavar="DIR",
        help="only (re)write SETTINGS.md and settings.png from DIR/settings.json")


def _devices() -> list[str]:
    return ["cpu", "cuda"] if environment.has_cuda() else ["cpu"]


def _list(backends: list[str]) -> int:
    present = _devices()
    for backend in backends:
        print(f"{backend}:")
        for s in SETTINGS.get(backend, ()):
            here = s.unavailable or ("" if set(s.devices) & set(present)
                                     else f"{', '.join(s.devices)} only")
            status = f"n/a: {here}" if here else "runs here"
            print(f"  {s.name:<26} {s.scope:<8} {','.join(s.devices):<9} {status:<34} {s.what}")
    return 0


def main(args: argparse.Namespace) -> int:
    backends = choice_list(args.backends, impls.BACKENDS, "backend")
    if args.list:
        return _list(backends)
    if args.report:
        doc = results.load(Path(args.report))
        print(report.write_report(Path(args.report), doc))
        return 0
    preset = args.preset or "quick"
    if preset not in PLANS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PLANS)}")
    tasks = choice_list(args.tasks, TASKS, "task") if args.tasks else None
    overrides = knob_overrides(args)
    names = choice_list(args.settings, sorted({s.name for b in backends
                                               for s in SETTINGS.get(b, ())} | {"default"}),
                        "setting", default=[]) or None
    missing = [b for b in backends if not impls.is_installed(b)]
    if missing:
        raise InputError(f"backend {', '.join(missing)} is not installed here")
    devices = choice_list(args.devices, ("cpu", "cuda"), "device", default=_devices())
    if "cuda" in devices and not environment.has_cuda():
        raise InputError("--devices cuda: no CUDA device here")
    phases = choice_list(args.phases, STEADY_PHASES, "phase", default=list(plans.DEFAULT_PHASES))
    variants = None
    if args.variants:
        variants = [v.strip() for part in args.variants for v in part.split(",") if v.strip()]
    threads = args.threads or os.cpu_count() or 1
    plan = plans.build_plan(preset, plans.sweep_configs(preset, tasks, overrides), backends,
                            devices, phases, threads=threads, variants=variants, names=names,
                            keyword=args.keyword)
    run_dir = RunDirectory(args.out)
    started = time.monotonic()
    total = sum(1 for _ in plan.items) * (args.rounds or PLANS[preset].rounds)
    done = [0]

    def progress(line: str) -> None:
        done[0] += 1
        elapsed = time.monotonic() - started
        sys.stderr.write(f"[{done[0]}/{total}] {elapsed:5.0f}s {line}\n")

    sys.stderr.write(f"nnparity settings: {len(plan.cells)} cells, {plan.item_count()} "
                     f"(cell, setting) items in {len(plan.items)} environments, "
                     f"{len(plan.not_applicable)} n/a; into {run_dir.path}\n")
    doc = run_sweep(plan, run_dir.path, rounds=args.rounds, budget_s=args.budget,
                    seed=args.seed, gradcheck=not args.no_gradcheck, timeout_s=args.timeout,
                    time_limit_s=args.time_limit * 60 if args.time_limit else None,
                    progress=progress)
    results.write(run_dir.path, doc)
    checked = results.load(run_dir.path)  # the report reads what a reader would
    path = report.write_report(run_dir.path, checked)
    print(path)
    errored = [i for i in checked["items"] if not i["samples"]]
    bad_default = [i for i in checked["items"] if i["setting"] == plans.DEFAULT
                   and i["gradcheck"] is not None and i["gradcheck"].get("passed") is False]
    for item in errored:
        why = (item["errors"] or ["no samples"])[0]
        sys.stderr.write(f"nnparity settings: {item['id']}: {' '.join(why.split())[:300]}\n")
    for item in bad_default:
        sys.stderr.write(f"nnparity settings: {item['id']}: the default fails agreement\n")
    sys.stderr.write(f"nnparity settings: {len(checked['items'])} items, "
                     f"{checked['rounds']} round(s) in {checked['elapsed_s'] / 60:.1f} min"
                     + (f"; {checked['stopped']}" if checked["stopped"] else "") + "\n")
    return 1 if errored or bad_default else 0
