"""The harness's own cost: `python -m bench.timing.overhead [--backend B --task T --preset P]`.

`--backends all` (or a comma list) runs it for every backend, each in its own
process, and prints one table.

Times one synchronised training step of one program two ways in the same
process: through the harness's exact path (`measure.synced` + pytest-benchmark's
`pedantic`) and with a bare `time.perf_counter` loop around the same call.
Blocks alternate (bare, harness, bare) several times so drift hits both, and
the script prints both medians and their ratio; it exits 1 when they differ by
more than 3%. This is a benchmark script, not a test: it is never collected by
the test suite, and it writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.options import positive_int

LIMIT = 0.03
BLOCKS = 5
CONFIG_ENV = "NNPARITY_OVERHEAD"
_STATE: dict[str, Any] = {"bare": [], "harness": []}


def _program() -> tuple[Any, Any]:
    import impls
    from tasks import get_task
    from tasks.optim import OptimizerSpec
    from tasks.params import init_params

    cfg_in = json.loads(os.environ[CONFIG_ENV])
    task = get_task(cfg_in["task"])
    cfg = task.config(cfg_in["preset"])
    spec = task.model(cfg)
    backend = impls.load(cfg_in["backend"])
    variant = cfg_in.get("variant") or backend.variants[0]
    program = backend.build(spec, init_params(spec, seed=0), variant=variant,
                            dtype="float32", device="cpu",
                            optimizer=OptimizerSpec(name=cfg.optimizer, lr=cfg.lr))
    x, y = task.data(cfg).batch(0, cfg.batch_size)
    return program, (program.put(x), program.put(y))


def pytest_generate_tests(metafunc: Any) -> None:
    if "block" in metafunc.fixturenames:
        metafunc.parametrize("block", range(BLOCKS))


def test_overhead(benchmark: Any, block: int) -> None:
    from bench.timing import measure

    if "call" not in _STATE:
        program, (x, y) = _program()
        _STATE["call"] = measure.synced(program, program.step, x, y)
        for _ in range(20):  # warm-up, as the worker does, never timed
            _STATE["call"]()
    call, rounds = _STATE["call"], int(json.loads(os.environ[CONFIG_ENV])["rounds"])
    _STATE["bare"] += measure.bare_loop(call, rounds // 2)
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0)
    _STATE["harness"] += list(benchmark.stats.stats.data)
    _STATE["bare"] += measure.bare_loop(call, rounds - rounds // 2)
    assert len(_STATE["harness"]) == rounds * (block + 1)


def _shared() -> dict[str, Any]:
    """The state the tests filled: pytest imports this file as `bench.timing.overhead`, a
    different module object from `__main__` when run with -m."""
    module = sys.modules.get("bench.timing.overhead", sys.modules[__name__])
    return module._STATE


class _Report:
    def pytest_sessionfinish(self) -> None:
        state = _shared()
        bare, harness = state["bare"], state["harness"]
        if not bare or not harness:
            return
        b, h = statistics.median(bare), statistics.median(harness)
        state["ratio"] = h / b
        print(f"\nbare perf_counter loop: median {b * 1e6:10.2f} us over {len(bare)} calls")
        print(f"harness (pedantic):     median {h * 1e6:10.2f} us over {len(harness)} calls")
        print(f"ratio harness/bare: {h / b:.4f} (limit 1 +- {LIMIT:.0%})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timing.overhead", description=__doc__)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--backends", default=None,
                        help="comma list (or 'all'): each backend in its own process, one "
                             "table of ratios; overrides --backend")
    parser.add_argument("--variant", default=None, help="default: the backend's first")
    parser.add_argument("--task", default="mlp_regression")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--rounds", type=positive_int, default=400,
                        help="timed calls per block and way")
    parser.add_argument("--threads", type=positive_int, default=None)
    args = parser.parse_args(argv)
    if args.backends:
        return _every_backend(args)
    from impls.threads import configure

    configure(args.threads)  # before any framework import
    os.environ[CONFIG_ENV] = json.dumps(vars(args))
    import pytest

    code = pytest.main([str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider",
                        "-o", "addopts=", "-o", "python_files=overhead.py",
                        "--benchmark-disable-gc", "--benchmark-columns=median,iqr,rounds",
                        "--no-header"], plugins=[_Report()])
    state = _shared()
    if code != 0 or "ratio" not in state:
        return 2
    return 0 if abs(state["ratio"] - 1) <= LIMIT else 1


def _every_backend(args: argparse.Namespace) -> int:
    """Run this script once per backend in a fresh process; print one table."""
    import re
    import subprocess

    import impls

    names = list(impls.BACKENDS) if args.backends == "all" else args.backends.split(",")
    unknown = [n for n in names if n not in impls.BACKENDS]
    if unknown:
        print(f"error: unknown backend {unknown[0]!r}; choose from {', '.join(impls.BACKENDS)}",
              file=sys.stderr)
        return 2
    rows, worst = [], 0
    for name in names:
        cmd = [sys.executable, "-m", "bench.timing.overhead", "--backend", name,
               "--task", args.task, "--preset", args.preset, "--rounds", str(args.rounds)]
        cmd += ["--variant", args.variant] if args.variant else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        text = proc.stdout
        found = {k: re.search(rf"{k}.*?median\s+([\d.]+) us", text)
                 for k in ("bare", "harness")}
        ratio = re.search(r"ratio harness/bare: ([\d.]+)", text)
        if not ratio or not all(found.values()):
            rows.append(f"| {name} | error (exit {proc.returncode}) | | |")
            worst = max(worst, 2)
            continue
        rows.append(f"| {name} | {float(found['bare'].group(1)):.2f} | "
                    f"{float(found['harness'].group(1)):.2f} | {float(ratio.group(1)):.4f} |")
        worst = max(worst, proc.returncode)
    print(f"{args.task}, preset {args.preset}, one synchronised float32 step, "
          f"{BLOCKS} alternating blocks x {args.rounds} calls")
    print("| backend | bare loop median (us) | harness median (us) | harness / bare |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return worst


if __name__ == "__main__":
    sys.exit(main())
