"""One settings-sweep worker process: `python -m bench.settings.worker SPEC.json`.

It applies its environment (a process setting's thread count, environment variables
and XLA flags) before any framework is imported, then for each item in the spec's
order builds a program with the item's setting (another variant, a precision mode,
build options; one program serves the phases of one configuration and setting, which
the order keeps together), checks its loss, output and gradients against the float64
reference with gradcheck's tolerance model (`bench.agreement.check.program_rows`)
when the spec asks (the first round), warms it up as `run` does
(`bench.timing.measure.warm_up`) and takes its share of the timed samples. Every
finished item, ok or error, is appended to the spec's JSON-lines stream at once, so
a process that is killed keeps what it finished. Runs only as a child of the sweep.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def apply_environment(spec: dict[str, Any]) -> int:
    """Set the process's environment before any framework is imported; the thread count."""
    from impls.settings import apply_process_environment

    # the sweep also started this process without the `unset` variables
    apply_process_environment(spec.get("env"), spec.get("xla_flags"), spec.get("unset"))
    from impls.threads import configure  # imports numpy: after the environment

    threads = configure(int(spec["threads"]))
    if spec["backend"] == "numpy":  # numpy (and its BLAS) may already be loaded here
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(threads)
        except ImportError:  # the environment variables configure() set still apply
            pass
    return threads


def _blas_kernel() -> str:
    """numpy's BLAS as threadpoolctl sees it in this process: "openblas Haswell"."""
    from bench.timing.environment import blas_info

    return "; ".join(" ".join(str(b[k]) for k in ("internal_api", "architecture") if b.get(k))
                     for b in blas_info() if b.get("user_api") == "blas")[:200]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _append(stream: Path, entry: dict[str, Any]) -> None:
    with stream.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()


def run(spec: dict[str, Any]) -> None:
    apply_environment(spec)
    import gc

    import numpy as np

    import impls
    from bench.agreement.check import program_rows, program_setup, summary
    from bench.timing import measure
    from bench.timing.matrix import plan_from_dict
    from tasks import get_task
    from tasks.optim import OptimizerSpec

    plan = plan_from_dict(spec["plan"])
    stream = Path(spec["stream"])
    backend = impls.load(spec["backend"])
    blas = _blas_kernel() if spec["backend"] == "numpy" else ""
    checked: dict[tuple, dict[str, Any]] = {}
    current: tuple[tuple, Any] | None = None  # (key, program): one per (config, setting)
    for item in spec["items"]:
        overrides = dict(tuple(kv) for kv in item["overrides"])
        entry: dict[str, Any] = {"id": item["id"], "round": spec["round"], "samples": [],
                                 "error": ""}
        key = (item["task"], tuple(sorted(overrides.items())), item["setting"],
               item["batch_size"])
        try:
            cfg, model_spec, params = program_setup(item["task"], spec["preset"], overrides)
            if current is None or current[0] != key:
                current = None
                gc.collect()
                start = time.perf_counter()
                built = backend.build(
                    model_spec, params, variant=item["variant"], dtype=item["dtype"],
                    device=item["device"], optimizer=OptimizerSpec(cfg.optimizer, cfg.lr),
                    precision=item["precision"],
                    options=dict(tuple(kv) for kv in item["options"]))
                entry["build_s"] = time.perf_counter() - start
                current = (key, built)
            program = current[1]
            entry["precision"] = program.precision
            if blas:  # which kernel this process's BLAS runs (a core-type setting moves it)
                entry["blas"] = blas
            # before any step: the check compares the program's first gradients
            if spec.get("gradcheck") and key not in checked:
                start = time.perf_counter()
                entry["check_s"] = 0.0
                try:
                    rows = program_rows(item["task"], spec["preset"], overrides,
                                        spec["backend"], item["variant"], item["dtype"],
                                        item["device"], program)
                    checked[key] = {k: _clean(v) for k, v in summary(rows).items()}
                except Exception as exc:  # a check that cannot run is a failed check
                    checked[key] = {"passed": False, "verdict": "error",
                                    "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
                entry["check_s"] = time.perf_counter() - start
            if key in checked:  # every phase of the (cell, setting) carries its verdict
                entry["gradcheck"] = checked[key]
            x, y = get_task(item["task"]).data(cfg).batch(0, item["batch_size"])
            xd, yd = program.put(x), program.put(y)
            program.sync(xd)
            target = {"forward": (program.forward, xd),
                      "backward": (program.loss_and_grads, xd, yd),
                      "step": (program.step, xd, yd)}[item["phase"]]
            call = measure.with_test_delay(measure.synced(program, *target),
                                           f"{spec['backend']}@{item['setting']}")
            counter = measure.CompileCounter(program)
            gc.collect()
            start = time.perf_counter()
            warm = measure.warm_up(call, counter, plan)
            entry["warmup_s"] = time.perf_counter() - start  # compiles included
            before = counter.count()
            n = measure.rounds_for(warm.last_s, plan)
            gc.disable()
            try:
                samples = measure.bare_loop(call, n)
            finally:
                gc.enable()
            after = counter.count()
            entry.update(samples=[float(s) for s in samples], warmup_calls=warm.calls,
                         warmup_stable=warm.stable, warmup_settled=warm.settled,
                         retraces=(after - before if before is not None and after is not None
                                   else None),
                         median_s=float(np.median(samples)))
        except Exception as exc:  # recorded per item, never fatal to the process
            entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            current = None  # a failed program may be in a bad state
            if os.environ.get("NNPARITY_DEBUG"):
                traceback.print_exc()
        program = None
        _append(stream, entry)


def _die_with_parent() -> None:
    """Linux: this process (in its own session) is killed when the sweep dies."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m bench.settings.worker SPEC.json\n")
        return 2
    _die_with_parent()
    run(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
