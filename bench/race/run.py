"""`nnparity race`: train every backend to the same held-out target, from the same start.

For each raced task (`bench.race.config.RACE_TASKS`) and backend, one worker
process (`python -m bench.race.worker`, the shared thread policy set before its
framework is imported) trains every entry (variant x dtype x precision) for N
seeds, each seed's initial parameters and batch order the same in every
backend. Groups run one at a time, so no two races share the cores. The raw
results go to `race.json` in the run directory; REPORT.md and one figure per
task are rendered from that file alone (`--report DIR` renders them again).
This module imports no framework and times nothing itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import impls
from bench.options import InputError, add_list_option, backend_list, choice_list, positive_int
from bench.race import config
from bench.race.report import FORMAT, RAW, write_report
from bench.results.paths import ROOT
from bench.results.write import write_text_atomic
from impls.base import PRECISIONS

GROUP_TIMEOUT_S = 1800.0  # one (backend, task) group: every entry and seed of it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default",
                        help="; ".join(f"{k}: {p.note}" for k, p in config.PRESETS.items()))
    add_list_option(parser, "tasks", f"comma list of {', '.join(config.RACE_TASKS)}")
    add_list_option(parser, "backends", "comma list (default: every installed backend)")
    parser.add_argument("--all-variants", action="store_true",
                        help="every variant of each backend, not only its default (as "
                             "--preset full)")
    add_list_option(parser, "dtypes", "comma list of float32, float64 (default: the preset's)")
    add_list_option(parser, "precisions",
                    f"comma list of {', '.join(PRECISIONS)} for float32 entries; modes a "
                    "backend does not offer on the CPU are left out (default: fp32)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds per entry (default: the preset's, 5)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="intra-op threads for every framework (default: all cores)")
    parser.add_argument("--out", default=None, help="run directory (default: a new one "
                                                    "under results/runs/)")
    parser.add_argument("--timeout", type=positive_int, default=int(GROUP_TIMEOUT_S),
                        help="seconds one (backend, task) group may take")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help=f"only render REPORT.md and figures again from DIR/{RAW}")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    preset = config.preset(args.preset)
    tasks = choice_list(args.tasks, config.RACE_TASKS, "task")
    backends = backend_list(args.backends)
    missing = [b for b in backends if not impls.is_installed(b)]
    if args.backends and missing:
        raise InputError(f"backend {missing[0]!r} is not installed "
                         f"(pip install 'nnparity[{missing[0]}]')")
    backends = [b for b in backends if b not in missing]
    dtypes = choice_list(args.dtypes, impls.DTYPES, "dtype", preset.dtypes)
    precisions = choice_list(args.precisions, PRECISIONS, "precision", preset.precisions)
    return {"preset": args.preset, "tasks": tasks, "backends": backends,
            "variants": "all" if args.all_variants else preset.variants, "dtypes": dtypes,
            "precisions": precisions, "seeds": args.seeds or preset.seeds}


def _run_group(work: Path, plan: dict, backend: str, task: str, threads: int | None,
               timeout: float) -> dict[str, Any]:
    name = f"{backend}_{task}"
    spec = {"backend": backend, "task": task, "variants": plan["variants"],
            "dtypes": plan["dtypes"], "precisions": plan["precisions"], "seeds": plan["seeds"],
            "threads": threads, "spawned": time.time()}
    spec_path, out_path, log_path = (work / f"{name}.spec.json", work / f"{name}.json",
                                     work / f"{name}.log")
    write_text_atomic(spec_path, json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.race.worker", str(spec_path),
                                   str(out_path)], stdout=log, stderr=subprocess.STDOUT,
                                  env=env, timeout=timeout, cwd=ROOT, check=False)
            error = "" if proc.returncode == 0 else f"worker exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            error = f"worker timed out after {timeout:.0f}s"
    if not error and out_path.is_file():
        return json.loads(out_path.read_text(encoding="utf-8"))
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] \
        if log_path.is_file() else []
    return {"backend": backend, "task": task, "error": ": ".join([error or "no result",
                                                                   *tail])[:400],
            "runs": [], "skipped": []}


def main(args: argparse.Namespace) -> int:
    if args.report is not None:
        path = Path(args.report)
        print(f"report: {write_report(path)}")
        return 0
    if args.out is not None and not args.out.strip():
        raise InputError("--out '': an empty path (leave --out out for the default)")
    plan = _plan(args)
    if not plan["backends"]:
        raise InputError("no selected backend is installed")
    from bench.timing.runner import RunDirectory

    run_dir = RunDirectory(args.out)
    out = run_dir.path
    work = out / ".work"
    work.mkdir(exist_ok=True)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    groups = []
    pairs = [(t, b) for t in plan["tasks"] for b in plan["backends"]]
    for i, (task, backend) in enumerate(pairs, 1):
        tick = time.perf_counter()
        group = _run_group(work, plan, backend, task, args.threads, float(args.timeout))
        groups.append(group)
        if not args.quiet:
            runs = group.get("runs", [])
            reached = sum(1 for r in runs if r["reached"])
            what = group.get("error") or f"{reached}/{len(runs)} runs reached the target"
            print(f"[{i}/{len(pairs)}] {task} {backend}: {what} "
                  f"({time.perf_counter() - tick:.0f}s)", file=sys.stderr, flush=True)
    from impls.threads import threads as default_threads

    doc = {
        "format": FORMAT,
        "plan": plan,
        "tasks": {t: {"target": r.target, "higher_is_better": r.higher_is_better,
                      "eval_every": r.eval_every, "budget": r.budget,
                      "overrides": dict(r.overrides), "reason": r.reason}
                  for t, r in config.RACE_TASKS.items() if t in plan["tasks"]},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "threads": args.threads or default_threads(),
                    "load_before": round(load_before, 2),
                    "load_after": round(os.getloadavg()[0], 2),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "seconds": round(time.perf_counter() - start, 1)},
        "groups": [{k: g.get(k) for k in ("backend", "task", "version", "threads",
                                           "import_s", "data_s", "skipped", "error")}
                   for g in groups],
        "runs": [r for g in groups for r in g.get("runs", [])],
    }
    write_text_atomic(out / RAW, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    shutil.rmtree(work, ignore_errors=True)  # the workers' scratch files: race.json holds all
    report = write_report(out)
    print(f"report: {report}  ({doc['machine']['seconds']:.0f}s)")
    # a worker or a run that raised is an error (exit 1); an entry that misses its
    # target is a result, marked failed in the report
    errors = [g for g in groups if g.get("error")] + [r for r in doc["runs"] if r["error"]]
    if errors:
        print(f"{len(errors)} group(s) or run(s) errored; see the report", file=sys.stderr)
    return 1 if errors else 0
