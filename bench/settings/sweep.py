"""Running a settings sweep: rounds of worker processes, one at a time, into settings.json.

Round r starts each (backend, environment) process of the plan once, in the round's
seeded order (`plan.round_orders`), each with its items in its own seeded order and
1/rounds of the timed budget (as `run`'s rounds). The first round also checks every
(cell, setting) program against the float64 reference. A process that overruns its
timeout is killed and its unfinished items are recorded as errors; finished items
are kept. torch and jax processes share compile caches inside the run's scratch
folder (inductor's, JAX's persistent one), so later rounds do not pay the same
compiles again (only steady phases are timed).
The result is one JSON document (`bench.settings.results`). Imports no framework.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.results.paths import ROOT
from bench.settings.plan import DEFAULT, SweepPlan, item_spec, round_orders
from bench.timing.environment import nnparity_info
from bench.timing.matrix import PLANS, round_plan

FORMAT = "nnparity-settings"
FORMAT_VERSION = 1


def _read_stream(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line: the process was killed mid-write
            continue
    return out


def _cpu_s() -> float:
    """CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_process(spec: dict[str, Any], work: Path, name: str, timeout_s: float) -> str:
    """Run one worker process; "" or why it failed (timeout, crash)."""
    path = work / f"{name}.spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ)
    # compile caches shared by the sweep's processes (a user's own are kept): later rounds
    # load what the first compiled; the steady phases timed are the same programs
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor"))
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(work / "jax-cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    for key in spec.get("unset") or []:  # read when a library loads: gone before the start
        env.pop(str(key), None)
    log = (work / f"{name}.log").open("w", encoding="utf-8")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "bench.settings.worker", str(path)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"worker killed after its {timeout_s:g} s timeout"
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    finally:
        log.close()
    if code != 0:
        tail = (work / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        last = (tail.strip().splitlines() or ["no output"])[-1][:300]
        return f"worker exited with {code}: {last}"
    return ""


def run_sweep(plan: SweepPlan, out: Path, *, rounds: int | None = None,
              budget_s: float | None = None, seed: int = 0, gradcheck: bool = True,
              timeout_s: float | None = None, time_limit_s: float | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every item of `plan` in `rounds` rounds; the results document (not yet written).

    With `time_limit_s`, a round after the first starts only when the time spent so far
    plus the previous round's duration stays within the limit (later rounds check
    nothing, so the previous one is an upper estimate); the document records how many
    rounds ran and why it stopped. The first round always runs: every item needs its
    agreement check and one round of samples."""
    base = PLANS[plan.preset]
    base = replace(base, rounds=rounds or base.rounds)
    if budget_s is not None:
        base = replace(base, budget_s=budget_s)
    timing = round_plan(base)
    timeout = base.timeout_s
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    by_id = {item.id: item for items in plan.items.values() for item in items}
    env_of = {item.id: key for key, items in plan.items.items() for item in items}
    results: dict[str, dict[str, Any]] = {
        iid: {"id": iid, "cell": item.cell.id, "backend": item.cell.backend,
              "task": item.cell.config.label, "phase": item.cell.phase,
              "device": item.cell.device, "setting": item.setting,
              "environment": env_of[iid], "samples": [], "round_sizes": [],
              "errors": [], "gradcheck": None}
        for iid, item in by_id.items()}
    recorded: list[dict[str, Any]] = []
    processes: list[dict[str, Any]] = []
    stopped = ""
    start = time.monotonic()
    last_round_s = 0.0
    for r in range(base.rounds):
        elapsed = time.monotonic() - start
        if r and time_limit_s is not None and elapsed + last_round_s > time_limit_s:
            stopped = (f"stopped after {r} of {base.rounds} rounds: another round "
                       f"(~{last_round_s / 60:.1f} min) would pass the {time_limit_s / 60:g} "
                       "min limit")
            break
        round_start = time.monotonic()
        envs, orders = round_orders(plan, seed, r)
        recorded.append({"environments": envs, "items": orders})
        for key in envs:
            env = plan.environments[key]
            name = f"r{r}_{key.replace(':', '_')}"
            stream = work / f"{name}.jsonl"
            spec = {"backend": env.backend, "preset": plan.preset, "threads": env.threads,
                    "env": [list(kv) for kv in env.env], "xla_flags": list(env.xla_flags),
                    "unset": list(env.unset),
                    "round": r, "gradcheck": gradcheck and r == 0, "plan": asdict(timing),
                    "stream": str(stream),
                    "items": [item_spec(by_id[i], plan.settings.get(
                        f"{env.backend}:{by_id[i].setting}")) for i in orders[key]]}
            wall, cpu = time.monotonic(), _cpu_s()
            # --timeout is per process; the preset's is per matrix group (~10 cells): a
            # process of many items (torch's default, every compile mode) gets it per 10
            limit = timeout_s or timeout * max(1.0, len(orders[key]) / 10)
            why = _run_process(spec, work, name, limit)
            processes.append({"round": r, "environment": key, "items": len(orders[key]),
                              "wall_s": time.monotonic() - wall, "cpu_s": _cpu_s() - cpu,
                              "error": why})
            done = set()
            for entry in _read_stream(stream):
                res = results.get(entry.get("id"))
                if res is None:
                    continue
                done.add(entry["id"])
                if entry.get("error"):
                    res["errors"].append(f"round {r}: {entry['error']}")
                elif entry.get("samples"):
                    res["samples"] += entry["samples"]
                    res["round_sizes"].append(len(entry["samples"]))
                    for k in ("warmup_stable", "retraces", "precision", "blas"):
                        if k in entry:
                            res[k] = entry[k]
                for k in ("build_s", "check_s", "warmup_s"):
                    if isinstance(entry.get(k), int | float):
                        res.setdefault(k, []).append(entry[k])
                if entry.get("gradcheck") is not None:
                    res["gradcheck"] = entry["gradcheck"]
            for iid in orders[key]:
                if iid not in done:
                    results[iid]["errors"].append(f"round {r}: {why or 'not reached'}")
            if progress:
                progress(f"round {r + 1}/{base.rounds} {key} ({len(orders[key])} items)"
                         + (f": {why}" if why else ""))
        last_round_s = time.monotonic() - round_start
    elapsed = time.monotonic() - start
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "preset": plan.preset,
        "rounds": len(recorded),
        "rounds_planned": base.rounds,
        "stopped": stopped,
        "time_limit_s": time_limit_s,
        "processes": processes,
        "budget_s": base.budget_s,
        "seed": seed,
        "gradcheck": gradcheck,
        "elapsed_s": elapsed,
        "machine": nnparity_info(plan.environments[next(iter(plan.items))].threads),
        "environments": {k: {"backend": e.backend, "name": e.name, "threads": e.threads,
                             "env": [list(kv) for kv in e.env], "xla_flags": list(e.xla_flags)}
                         for k, e in plan.environments.items()},
        "settings": {k: {"backend": s.backend, "name": s.name, "what": s.what,
                         "scope": s.scope, "devices": list(s.devices)}
                     for k, s in plan.settings.items()},
        "round_orders": recorded,
        "items": sorted(results.values(), key=lambda x: x["id"]),
        "not_applicable": [asdict(n) for n in plan.not_applicable],
        "default": DEFAULT,
    }
