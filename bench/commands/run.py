"""The `nnparity run` command: time the benchmark matrix into a run directory.

Validates the selection (exit 2 with one line on a bad value) and the plan's
options, owns the run directory (bench/timing/runner.py `RunDirectory`), asks
each backend to describe itself, builds the matrix (bench/timing/matrix.py),
picks the shard, and hands the groups to the executor the options name
(`--executor`, registered by name in bench/timing/executor.py: the local one by
default, Ray's only when asked for). SIGINT, SIGTERM and SIGHUP take the Ctrl-C
path, which keeps every finished record. Exit 0 when every cell ran and agreed,
1 when a cell failed agreement or errored (every record is still written), 2 on
bad input or a disk that cannot be written, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import impls
from bench.commands.common import check_out_dir
from bench.options import (
    InputError,
    OutputError,
    add_list_option,
    add_task_options,
    check_overrides_known,
    choice_list,
    int_range,
    knob_overrides,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
)
from bench.progress import clock
from bench.results.paths import RESULTS
from bench.timing import environment, runner
from bench.timing.executor import EXECUTORS, Executor, Progress, RunContext
from bench.timing.matrix import (
    PHASES,
    PLANS,
    Group,
    MatrixError,
    Plan,
    Selection,
    build_groups,
    keyword_matcher,
    not_applicable,
    task_configs,
)
from bench.timing.runner import (
    DESCRIBE_TIMEOUT_S,
    LocalExecutor,
    RunDirectory,
    check_devices,
    count_failures,
    round_cells,
)
from bench.timing.shard import parse_shard, shard_groups
from impls.base import DEVICES, DTYPES, PRECISIONS, STRICT, BackendError
from tasks import PRESETS, TASKS
from tasks.spec import SpecError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_options(parser, many=True)
    arg = parser.add_argument
    # list options are plural; the singular spelling is an alias (add_list_option)
    add_list_option(parser, "backends", f"comma list of {', '.join(impls.BACKENDS)}")
    add_list_option(parser, "variants", "comma list, e.g. eager,jit,xla")
    add_list_option(parser, "devices", "comma list of cpu, cuda (default: all present)")
    add_list_option(parser, "dtypes", "comma list of float32, float64 (default float32)")
    add_list_option(parser, "precisions",
                    f"comma list of {', '.join(PRECISIONS)} (default fp32: strict float32, "
                    "TF32 off); reduced modes are timed beside their error against float64, "
                    "and combinations a backend does not offer are n/a")
    add_list_option(parser, "phases", f"comma list of {', '.join(PHASES)}")
    arg("-k", dest="keyword", default=None, metavar="EXPR",
        help="pytest-style expression over cell ids, e.g. 'lstm and not compile'")
    arg("--out", default=None, help="run directory (default results/runs/<timestamp>)")
    arg("--threads", type=int_range(1, MAX_THREADS), default=None,
        help="threads for every framework (default: all)")
    arg("--timeout", type=positive_float, default=None,
        help="seconds per group (and per backend description) before it is killed")
    arg("--seed", type=seed_int, default=0, help="parameter initialisation seed")
    arg("--budget", type=positive_float, default=None,
        help="timed seconds per cell (default: the preset's plan, e.g. 0.05 for quick)")
    arg("--min-rounds", type=positive_int, default=None,
        help="timed samples per cell, at least (pytest-benchmark's rounds)")
    arg("--rounds", type=positive_int, default=None,
        help="independent worker processes per group, each timing every cell in its own "
             "seeded random order with its share of the budget (default: the preset's, "
             "2 for quick, 3 for standard); a cell's confidence interval then includes "
             "how much it moves from one process to the next")
    arg("--extra-rounds", type=non_negative_int, default=None, metavar="N",
        help="after the rounds, up to N more rounds of only the cells whose 95%% interval "
             "is wider than --target-ci (default: the preset's, 1)")
    arg("--target-ci", type=positive_float, default=None, metavar="F",
        help="the interval half-width, relative to the median, that a cell needs no extra "
             "round for (default 0.03: +-3%%)")
    arg("--no-gradcheck", action="store_true", help="skip the per-cell agreement check")
    arg("--shard", default=None, metavar="K/N",
        help="run only shard K of N (a deterministic share of the groups, e.g. 2/4)")
    arg("--settings", default=None, metavar="SPEC",
        help="a tuned run: 'best' (each framework's best safe setting from "
             "--settings-from) or BACKEND:SETTING,... (e.g. torch:channels_last,jax:default); "
             "each cell records the setting it ran with (default: every framework's defaults)")
    arg("--settings-from", default=None, metavar="PATH",
        help="the settings sweep whose best safe settings --settings best uses (a directory "
             "or its settings.json; default results/settings)")
    add_executor_arguments(parser)


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor (by name, `EXECUTORS`), and the Ray executor's --address and --machines."""
    arg = parser.add_argument
    arg("--executor", default="local", help=f"one of {', '.join(EXECUTORS)} (default local)")
    arg("--address", default=None,
        help="Ray cluster address for --executor ray (default: RAY_ADDRESS or a local Ray)")
    add_list_option(parser, "machines",
                    "comma list of Ray machines (node label nnparity-machine, or a custom "
                    "resource name, or a hostname) to run on; default every node with a slot")


#: more threads than any machine has cores is a typo, not a setting
MAX_THREADS = 4096


def selection_from_args(args: argparse.Namespace) -> Selection:
    preset = args.preset or "quick"
    if preset not in PRESETS:
        raise MatrixError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    overrides = knob_overrides(args)
    tasks = choice_list(args.tasks, TASKS, "task")
    check_overrides_known(tasks, overrides)
    default_devices = ["cpu", "cuda"] if environment.has_cuda() else ["cpu"]
    variants = None
    if args.variants:
        variants = tuple(v.strip() for part in args.variants for v in part.split(",") if v.strip())
    sel = Selection(
        tasks=tuple(tasks),
        backends=tuple(choice_list(args.backends, impls.BACKENDS, "backend")),
        variants=variants,
        devices=tuple(choice_list(args.devices, DEVICES, "device", default=default_devices)),
        dtypes=tuple(choice_list(args.dtypes, DTYPES, "dtype", default=["float32"])),
        phases=tuple(choice_list(args.phases, PHASES, "phase")),
        preset=preset,
        overrides=overrides,
        keyword=args.keyword,
        precisions=tuple(choice_list(getattr(args, "precisions", None), PRECISIONS, "precision",
                                     default=[STRICT])),
    )
    for task in sel.tasks:  # validates knob values now, before anything runs
        task_configs(task, preset, overrides)
    keyword_matcher(sel.keyword)
    return sel


def plan_for(sel: Selection, args: argparse.Namespace) -> Plan:
    """The preset's plan with the user's --budget / --min-rounds applied."""
    plan = PLANS[sel.preset]
    # --budget and --min-rounds are positive by their argparse types
    if getattr(args, "budget", None) is not None:
        plan = replace(plan, budget_s=args.budget)
    if getattr(args, "min_rounds", None) is not None:
        plan = replace(plan, min_rounds=args.min_rounds,
                       max_rounds=max(plan.max_rounds, args.min_rounds))
    # --rounds and --extra-rounds are in range by their argparse types
    if getattr(args, "rounds", None) is not None:
        plan = replace(plan, rounds=args.rounds)
    if getattr(args, "extra_rounds", None) is not None:
        plan = replace(plan, extra_rounds=args.extra_rounds)
    if getattr(args, "target_ci", None) is not None:
        if not 0 < args.target_ci < 1:
            raise MatrixError(f"--target-ci must be between 0 and 1, got {args.target_ci:g}")
        plan = replace(plan, target_ci=args.target_ci)
    return plan


def executor_for(args: argparse.Namespace) -> Executor:
    """The executor the options ask for; bad combinations are one-line InputErrors.
    Executors are registered by name in `bench.timing.executor.EXECUTORS` and imported
    only when chosen (Ray's only when asked for), as `bench.cli.COMMANDS` registers
    commands."""
    name = getattr(args, "executor", None) or "local"
    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    machines = [m.strip() for part in (getattr(args, "machines", None) or [])
                for m in part.split(",") if m.strip()]
    if name == "local":
        if getattr(args, "address", None) or machines:
            raise InputError("--address and --machines need --executor ray")
        return LocalExecutor()
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(
        address=getattr(args, "address", None), machines=tuple(machines))


def check_environment() -> None:
    """Environment variables the workers read, checked before any worker starts: a bad
    one is bad input (exit 2, one line), not an error in every cell."""
    from impls.threads import interop_threads

    interop_threads()  # NNPARITY_INTEROP_THREADS: a positive integer or unset


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(_signum: int, _frame: Any) -> None:
    """SIGINT, SIGTERM and SIGHUP take the Ctrl-C path, so the current worker (in its
    own session) is stopped too and finished records are kept. The first one turns
    the others off: a second Ctrl-C must not interrupt the writing of what the first
    one saved."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _STOP_SIGNALS:
        # a signal ignored by whoever started us (nohup, a background job) stays ignored
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)


def resolve_settings(args: argparse.Namespace, backends: tuple[str, ...]
                     ) -> tuple[dict[str, Any], str, list[str]]:
    """`--settings`: backend -> its setting (None: defaults), where they came from, and
    notes (a framework the sweep lacks, a sweep from another processor)."""
    from bench.timing import tuning

    spec = args.settings
    if spec is None or spec.strip() != "best":
        if args.settings_from:
            raise InputError("--settings-from is for --settings best")
        if spec is None:
            return {}, "", []
        return tuning.parse_named(spec, backends), "named", []
    from bench.settings import analysis
    from bench.settings import results as sweep_results
    from impls.settings import find

    source = Path(args.settings_from) if args.settings_from else RESULTS / "settings"
    doc = sweep_results.load(source)

    def applicable(row: Any) -> bool:  # what a tuned run can apply, named-only excluded
        setting = find(row.backend, row.setting)
        return row.setting == tuning.DEFAULT or (
            setting is not None and not tuning.usable(setting) and not setting.by_name_only)

    best = analysis.best_per_backend([r for r in analysis.rows(doc["items"]) if applicable(r)])
    chosen: dict[str, Any] = {}
    notes = []
    for backend in backends:
        pick = best.get(backend)
        if pick is None:
            notes.append(f"{backend}: not in the sweep; defaults")
        chosen[backend] = (find(backend, pick.setting) if pick is not None
                           and pick.setting != tuning.DEFAULT else None)
    preset = getattr(args, "preset", None) or "quick"
    if doc.get("preset") and doc["preset"] != preset:
        notes.append(f"the sweep ran at the {doc['preset']} preset, this run is {preset}: a "
                     "setting's speed-up is specific to the shapes it was swept at")
    swept_on = str(doc.get("machine", {}).get("cpu", ""))
    here = environment.cpu_model()
    if swept_on and here and swept_on != here:
        notes.append(f"the sweep ran on {swept_on!r}, this is {here!r}: its best settings "
                     "may not be this machine's")
    commit = doc.get("machine", {}).get("commit", "")
    return chosen, f"best of {source}" + (f" (commit {commit[:10]})" if commit else ""), notes


def main(args: argparse.Namespace) -> int:
    _install_signal_handlers()
    runner.note_run_start()
    check_environment()
    check_out_dir(getattr(args, "out", None))
    sel = selection_from_args(args)
    chosen, source, notes = resolve_settings(args, sel.backends)
    if args.settings is not None and not any(chosen.values()):
        # every framework at its defaults (named so, or the sweep found nothing better):
        # an ordinary run, not labelled tuned
        sys.stderr.write("nnparity run: --settings " + args.settings + ": every framework "
                         "at its defaults; an untuned run" + "".join(f"; {n}" for n in notes)
                         + "\n")
        chosen = {}
    if chosen:
        from bench.timing.tuning import label

        sel = replace(sel, settings=label(chosen, source))
    plan = plan_for(sel, args)
    shard = parse_shard(getattr(args, "shard", None))
    executor = executor_for(args)
    threads = args.threads or os.cpu_count() or 1
    # own the run directory first, so a busy --out fails before anything slow runs;
    # bad input found below removes it again (it has written nothing)
    run_dir = RunDirectory(args.out)  # held until this process exits
    try:
        groups, sel_timeout = _select_groups(sel, args, shard, threads)
        if chosen:
            from bench.timing.tuning import tune_groups

            groups, took = tune_groups(groups, chosen)
            sys.stderr.write(f"nnparity run: tuned ({source}): " + "; ".join(notes + took)
                             + "\n")
    except EmptyShard as note:  # not an error: a CI matrix may have more shards than groups
        run_dir.discard()
        sys.stderr.write(f"{note}\n")
        return 0
    except (InputError, SpecError, BackendError):
        run_dir.discard()
        raise
    return _execute(run_dir, groups, sel, plan, args, executor, threads, sel_timeout)


class EmptyShard(Exception):
    """This shard of a valid selection holds no group."""


def _select_groups(sel: Selection, args: argparse.Namespace, shard, threads: int):
    """The groups to run (validated, sharded), and the group timeout."""
    # each precision mode is another program per cell, plus its error measurement
    timeout = args.timeout or PLANS[sel.preset].timeout_s * len(sel.precisions)
    with tempfile.TemporaryDirectory(prefix="nnparity-describe-") as tmp:
        described = runner.describe(sel, Path(tmp), threads,
                             args.timeout if args.timeout else DESCRIBE_TIMEOUT_S)
    check_devices(sel, described)
    groups = build_groups(sel, described)
    if shard is not None:
        everything = len(groups)
        groups = shard_groups(groups, sel, *shard)
        if everything and not groups:  # more CI shards than groups: this one has none
            raise EmptyShard(f"nnparity run: shard {shard[0]}/{shard[1]} has no group (the "
                             f"selection has {everything}); nothing to run")
    unoffered = not_applicable(sel, described)
    if not groups:
        extra = (f" ({len(unoffered)} combinations are n/a: no backend offers that precision "
                 "there)") if unoffered else ""
        raise InputError("the selection matches no cell"
                         + (f" in shard {shard[0]}/{shard[1]}" if shard else "") + extra)
    for backend, device, dtype, precision in sorted({(b, d, t, p) for _, b, _, d, t, p
                                                     in unoffered}):
        sys.stderr.write(f"n/a: {backend} {dtype} {precision} on {device} (not offered)\n")
    return groups, timeout


def _execute(run_dir: RunDirectory, groups: list[Group], sel: Selection, plan,
             args: argparse.Namespace, executor, threads: int, timeout: float) -> int:
    out = run_dir.path
    groups = executor.prepare(groups)
    if not isinstance(executor, LocalExecutor) and (plan.rounds > 1 or plan.extra_rounds):
        # a cluster node runs one process per group, and no extra rounds
        plan = replace(plan, rounds=1, extra_rounds=0)
        sys.stderr.write("nnparity run: one round per group on this executor (--rounds and "
                         "--extra-rounds are for the local executor)\n")
    work = out / ".work"  # worker specs, logs and streams; hidden, so readers skip it
    try:
        work.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {work}: {exc.strerror or exc}") from None
    cells = sum(g.size for g in groups)
    progress = Progress(sum(round_cells(g, plan.rounds) for g in groups))
    sys.stderr.write(f"nnparity run: {cells} cells in {len(groups)} groups x {plan.rounds} "
                     f"round(s) ({len(groups) * plan.rounds} worker processes, each cell's "
                     f"order randomised per round), preset {sel.preset}, {threads} threads "
                     f"-> {out}\n")
    ctx = RunContext(sel, plan, out, work, threads, args.threads is not None, args.seed,
                     timeout, not args.no_gradcheck)
    if hasattr(executor, "abandon"):  # a connection that never answers ends the process
        executor.abandon = lambda: (shutil.rmtree(work, ignore_errors=True),
                                    run_dir.discard())
    try:
        outcome = executor.run(groups, ctx, progress)
    except InputError:  # e.g. a Ray cluster that cannot be reached: nothing ran
        if not any(out.glob("*.json")):
            shutil.rmtree(work, ignore_errors=True)
            run_dir.discard()
        raise
    if outcome.interrupted:
        return 130
    if outcome.output_error:
        return 2
    for line in outcome.failed:
        sys.stderr.write(f"group error: {line}\n")
    disagree, errors = count_failures(out)
    verdict = (f"{disagree} cell(s) failed gradient agreement, {errors} cell(s) errored"
               if disagree or errors else "every cell ran and agreed" if not args.no_gradcheck
               else "every cell ran (agreement not checked: --no-gradcheck)")
    progress.close()
    sys.stderr.write(f"nnparity run: done in {clock(progress.elapsed)}; "
                     f"results in {out}; {verdict}\n")
    return 1 if disagree or errors else 0
