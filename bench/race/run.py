"""The race's driver: spawn one worker per (backend, task), journal every finished run.

For each raced task (`bench.race.config.RACE_TASKS`) and backend, one worker
process (`python -m bench.race.worker`, the shared thread policy set before its
framework is imported) trains every entry (variant x dtype x precision) for N
seeds, each seed's initial parameters and batch order the same in every
backend. Groups run one at a time, so no two races share the cores.

Nothing finished is lost: the worker appends each seed's run to a journal
(`.work/<group>.runs.jsonl`, one JSON line, flushed and synced) as it ends, and
after every group `race.json` is rewritten with all the runs so far, marked
`"partial": true` until the last group is in. A worker that is killed or times
out keeps the runs its journal holds (the group is marked with its error); an
interrupted race (Ctrl-C, or SIGTERM, which counts as Ctrl-C) writes what it
has, still marked partial, before it stops. Even a race killed outright leaves
race.json as of its last finished group, and the journal of the group it was
in. `race(..., resume=True)` (`nnparity race --resume --out DIR`) takes a
partial race.json up again: finished groups are kept, with the seeds a killed
group's journal holds, and an unfinished group's worker skips the seeds already
there. REPORT.md (and REPORT.html, with plotly) is written at the end and on an
interruption. The command's options live in bench/commands/race.py. This module
imports no framework and times nothing itself.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.options import InputError
from bench.race import config
from bench.race.html import write_html
from bench.race.report import FORMAT, RAW, load, write_report
from bench.race.worker import RUN_FIELDS
from bench.results.paths import ROOT
from bench.results.write import write_text_atomic

GROUP_TIMEOUT_S = 1800.0  # one (backend, task) group: every entry and seed of it
WORKER = (sys.executable, "-m", "bench.race.worker")
GROUP_FIELDS = ("backend", "task", "version", "threads", "import_s", "data_s", "skipped",
                "error")


def run_key(run: dict[str, Any]) -> tuple:
    return (run["variant"], run["dtype"], run["precision"], run["seed"])


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The runs a worker's journal holds; a last line cut off by a kill is left out."""
    runs = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(run, dict):
            runs.append(run)
    return runs


def run_group(work: Path, plan: dict, backend: str, task: str, threads: int | None,
              timeout: float, skip: list[tuple] = (),
              worker: tuple[str, ...] = WORKER) -> dict[str, Any]:
    """One (backend, task) group in its own worker process; the runs of `skip` (variant,
    dtype, precision, seed) are not run again. A worker that fails keeps its journal's runs."""
    name = f"{backend}_{task}"
    spec_path, out_path, log_path, journal = (work / f"{name}.spec.json", work / f"{name}.json",
                                              work / f"{name}.log", work / f"{name}.runs.jsonl")
    journal.unlink(missing_ok=True)
    spec = {"backend": backend, "task": task, "variants": plan["variants"],
            "dtypes": plan["dtypes"], "precisions": plan["precisions"], "seeds": plan["seeds"],
            "threads": threads, "spawned": time.time(), "journal": str(journal),
            "skip": [list(k) for k in skip]}
    write_text_atomic(spec_path, json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    error = ""
    try:
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.run([*worker, str(spec_path), str(out_path)], stdout=log,
                                      stderr=subprocess.STDOUT, env=env, timeout=timeout,
                                      cwd=ROOT, check=False)
                error = "" if proc.returncode == 0 else f"worker exited {proc.returncode}"
            except subprocess.TimeoutExpired:
                error = f"worker timed out after {timeout:.0f}s"
    except KeyboardInterrupt as exc:  # the runs finished so far go with it
        exc.runs = read_journal(journal)  # type: ignore[attr-defined]
        raise
    if not error and out_path.is_file():
        return json.loads(out_path.read_text(encoding="utf-8"))
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] \
        if log_path.is_file() else []
    return {"backend": backend, "task": task, "error": ": ".join([error or "no result",
                                                                   *tail])[:400],
            "runs": read_journal(journal), "skipped": []}


def document(plan: dict, groups: list[dict], machine: dict, pending: list[tuple[str, str]],
             ) -> dict[str, Any]:
    """race.json's content: `partial` (with the groups still `pending`) until all are in."""
    return {
        "format": FORMAT,
        "partial": bool(pending),
        "pending": [list(p) for p in pending],
        "plan": plan,
        "tasks": {t: {"target": r.target, "higher_is_better": r.higher_is_better,
                      "eval_every": r.eval_every, "budget": r.budget,
                      "overrides": dict(r.overrides), "reason": r.reason}
                  for t, r in config.RACE_TASKS.items() if t in plan["tasks"]},
        "machine": machine,
        "groups": [{k: g.get(k) for k in GROUP_FIELDS} for g in groups],
        "runs": [r for g in groups for r in g.get("runs", [])],
    }


def _resumed(out: Path, plan: dict) -> tuple[list[dict], float]:
    """The groups of a partial race.json in `out` (validated first), as run_group returns
    them, and the seconds the race had taken so far."""
    seconds = load(out)["machine"].get("seconds") or 0.0  # validated: bad is exit 2
    doc = json.loads((out / RAW).read_text(encoding="utf-8"))
    if not doc.get("partial"):
        raise InputError(f"--resume: {out / RAW} is a finished race; nothing to resume")
    if doc.get("plan") != plan:
        raise InputError(f"--resume: {out / RAW} was raced with other options "
                         f"({json.dumps(doc.get('plan'))[:200]})")
    groups = []
    for g in doc.get("groups", []):
        # a finished group keeps every run; an unfinished one its runs without an error
        runs = [r for r in doc["runs"] if r.get("task") == g.get("task")
                and r.get("backend") == g.get("backend")
                and not (g.get("error") and r.get("error"))]
        groups.append({**g, "runs": runs})
    return groups, seconds if isinstance(seconds, float) else 0.0


def _term_as_interrupt():
    """SIGTERM (`kill PID`, a job scheduler's stop) ends the race as Ctrl-C does, keeping
    what finished; returns the handler it replaced (None off the main thread)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave SIGTERM alone
        return None


def race(plan: dict, out: Path, threads: int | None, timeout: float, resume: bool = False,
         say: Callable[[str], None] | None = None,
         worker: tuple[str, ...] = WORKER) -> tuple[dict[str, Any], Path]:
    """Race `plan` into `out` (a locked run directory); returns race.json's content and
    REPORT.md's path. KeyboardInterrupt leaves a partial race.json and REPORT.md."""
    work = out / ".work"
    work.mkdir(exist_ok=True)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    pairs = [(t, b) for t in plan["tasks"] for b in plan["backends"]]
    done: dict[tuple[str, str], dict] = {}
    if resume:
        groups, before = _resumed(out, plan)
        start -= before  # the race's seconds count every try, not only this one
        done = {(g["task"], g["backend"]): g for g in groups}
        # a race killed outright (SIGKILL) wrote no race.json for the group it was in:
        # its worker's journal still holds the seeds that group finished
        for task, backend in pairs:
            group = done.get((task, backend))
            if group is not None and not group.get("error"):
                continue
            left = [r for r in read_journal(work / f"{backend}_{task}.runs.jsonl")
                    if set(RUN_FIELDS) <= set(r) and r.get("task") == task
                    and r.get("backend") == backend and not r.get("error")]
            if left:
                group = group or {"backend": backend, "task": task, "error": "killed"}
                seen = {run_key(r) for r in group.get("runs", [])}
                group["runs"] = group.get("runs", []) + [r for r in left
                                                         if run_key(r) not in seen]
                done[(task, backend)] = group
    from impls.threads import threads as default_threads

    def machine() -> dict[str, Any]:
        return {"python": platform.python_version(), "platform": platform.platform(),
                "cpus": os.cpu_count(), "threads": threads or default_threads(),
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
                "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "seconds": round(time.perf_counter() - start, 1)}

    def save() -> dict[str, Any]:
        doc = document(plan, [done[p] for p in pairs if p in done], machine(),
                       [p for p in pairs if p not in done or done[p].get("error")])
        write_text_atomic(out / RAW, json.dumps(doc, indent=1, allow_nan=False) + "\n")
        return doc

    save()  # at once: a race killed in its first group can be resumed too
    previous = _term_as_interrupt()
    try:
        for i, (task, backend) in enumerate(pairs, 1):
            before = done.get((task, backend))
            if before is not None and not before.get("error"):
                continue  # finished before the interruption
            kept = before["runs"] if before else []
            tick = time.perf_counter()
            try:
                group = run_group(work, plan, backend, task, threads, timeout,
                                  skip=[run_key(r) for r in kept], worker=worker)
            except KeyboardInterrupt as exc:
                done[(task, backend)] = {**(before or {"backend": backend, "task": task}),
                                         "runs": kept + list(getattr(exc, "runs", [])),
                                         "error": "interrupted"}
                raise
            seen = {run_key(k) for k in kept}
            group["runs"] = kept + [r for r in group.get("runs", []) if run_key(r) not in seen]
            done[(task, backend)] = group
            save()
            if say:
                runs = group["runs"]
                reached = sum(1 for r in runs if r.get("reached"))
                what = group.get("error") or f"{reached}/{len(runs)} runs reached the target"
                say(f"[{i}/{len(pairs)}] {task} {backend}: {what} "
                    f"({time.perf_counter() - tick:.0f}s)")
    except KeyboardInterrupt:  # what finished stays: a partial race.json and its report
        save()
        write_report(out)
        write_html(out)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    doc = save()
    shutil.rmtree(work, ignore_errors=True)  # the workers' scratch files: race.json holds all
    report = write_report(out)
    write_html(out)  # the race's own interactive page, where plotly is installed
    return doc, report
