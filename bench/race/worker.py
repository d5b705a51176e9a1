"""One race group in its own process: a (backend, task) pair, every entry and seed of it.

`python -m bench.race.worker SPEC.json RESULT.json` sets the shared thread
policy (`impls.threads.configure`) before any framework is imported, loads the
task's data once, then for every entry (variant, dtype, precision) and seed:
builds the program from the seed's canonical parameters (timed apart: start-up),
compiles its inference path with one held-out evaluation before the clock
(timed apart: compile), and trains with `bench.training.train.train` until the
first held-out evaluation that meets the target. Each finished run is
appended to the group's journal at once (bench/race/run.py); the result is written
atomically as JSON; an entry that raises is recorded with its error and the
group goes on. Imports a framework only through `impls.load`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

#: the result of one seed's run; `bench.race.report` validates every run against it
RUN_FIELDS = ("task", "backend", "variant", "dtype", "precision", "seed", "reached", "steps",
              "metric", "train_s", "eval_s", "first_step_s", "step_s", "compile_s", "warm_s",
              "startup_s", "evaluations", "error")


def run_group(spec: dict[str, Any], race=None) -> dict[str, Any]:
    """Race every entry of one (backend, task) group; `spec` as `bench.race.run` writes it.
    `race` (a `RaceTask`) replaces the task's own, for tests with a looser target. The
    runs `spec["skip"]` names ([variant, dtype, precision, seed]) are left out (a resumed
    race has them); each finished run is appended to `spec["journal"]` when given."""
    import impls
    from bench.race.config import RACE_TASKS
    from bench.training.train import build_program, train
    from tasks import get_task

    backend = spec["backend"]
    skip = [list(k) for k in spec.get("skip", [])]
    race = race or RACE_TASKS[spec["task"]]
    task = get_task(race.task)
    cfg = task.config("quick", race.overrides)
    be = impls.load(backend)
    imported = time.time()  # the framework is imported: process start-up ends here
    tick = time.perf_counter()
    data = task.data(cfg)
    data_s = time.perf_counter() - tick
    spawn = float(spec.get("spawned", imported))
    import_s = max(0.0, imported - spawn)
    spec_model = task.model(cfg)
    variants = [v for v in be.variants if be.supports(spec_model, v)]
    if spec["variants"] == "default":
        variants = variants[:1]
    group: dict[str, Any] = {"backend": backend, "task": race.task, "version": be.version(),
                             "threads": be.threads(), "import_s": import_s, "data_s": data_s,
                             "runs": [], "skipped": []}
    for variant in variants:
        for dtype in spec["dtypes"]:
            for precision in spec["precisions"]:
                if not be.supports_precision(spec_model, variant, dtype, "cpu", precision):
                    group["skipped"].append(f"{variant}/{dtype}/{precision}")
                    continue
                for seed in range(spec["seeds"]):
                    if [variant, dtype, precision, seed] in skip:
                        continue
                    run = _one_run(task, cfg, race, backend, variant, dtype, precision, seed,
                                   data, import_s + data_s, build_program, train)
                    group["runs"].append(run)
                    if spec.get("journal"):
                        journal(Path(spec["journal"]), run)
    return group


def journal(path: Path, run: dict[str, Any]) -> None:
    """Append one finished run as a JSON line, on disk before the next run starts: a
    worker killed later loses only the run it was in."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(run, allow_nan=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _one_run(task, cfg, race, backend, variant, dtype, precision, seed, data, startup,
             build_program, train) -> dict[str, Any]:
    run: dict[str, Any] = {"task": race.task, "backend": backend, "variant": variant,
                           "dtype": dtype, "precision": precision, "seed": seed,
                           "reached": False, "steps": 0, "metric": None, "train_s": None,
                           "eval_s": None, "first_step_s": None, "step_s": None,
                           "compile_s": None, "warm_s": None, "startup_s": None,
                           "evaluations": [], "error": None}
    try:
        tick = time.perf_counter()
        program = build_program(task, cfg, backend, variant, dtype, "cpu", precision, seed)
        build_s = time.perf_counter() - tick
        # compile the inference path before the clock: forward is pure, the model is unchanged
        tick = time.perf_counter()
        program.to_numpy(program.forward(program.put(data.x_test)))
        eval_compile_s = time.perf_counter() - tick
        result = train(task, cfg, backend, variant, dtype, "cpu", race.budget, progress=False,
                       stop_when=race.met, eval_every=race.eval_every, precision=precision,
                       seed=seed, data=data, program=program)
    except Exception as exc:  # noqa: BLE001 - recorded with the run; the group goes on
        run["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
        return run
    steps = len(result.losses)
    # a steady step: what the steps after the first took, evaluations left out
    rest = result.seconds - result.eval_seconds - result.first_step_seconds
    step_s = rest / (steps - 1) if steps > 1 else result.first_step_seconds
    first_call = max(0.0, result.first_step_seconds - step_s)  # the first step's compile
    metric = float(result.metric)
    run.update(reached=bool(race.met(metric)), steps=steps,
               metric=metric if math.isfinite(metric) else None,
               train_s=result.seconds, eval_s=result.eval_seconds,
               first_step_s=result.first_step_seconds, step_s=step_s,
               compile_s=first_call + eval_compile_s, warm_s=result.seconds - first_call,
               startup_s=startup + build_s,
               evaluations=[[int(s), float(m) if math.isfinite(m) else None]
                            for s, m in result.evaluations])
    return run


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    from impls.threads import configure

    configure(spec.get("threads"))  # before any framework is imported
    group = run_group(spec)
    from bench.results.write import write_text_atomic

    write_text_atomic(out_path, json.dumps(group, indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
