"""nnparity's variants against idiomatic code: `python -m bench.timing.idiomatic --preset quick`.

For each framework and model (MLP, CNN, LSTM, GRU of the preset), times the
loss and gradients of one float32 batch on the CPU through every nnparity
variant of that backend (its `loss_and_grads`, synchronised) and through a
plain script written the way that framework's users write it
(`bench.timing.bare_scripts`; TensorFlow gets two: Keras under `tf.function`
and the same with `jit_compile=True`). Each framework runs in its own process
with the same intra-op thread count (`impls.threads`, inter-op at the
framework's default). Contenders are timed in interleaved rounds, in a
rotating order, each round a median of `--calls` calls, so the machine's
noise shows as the spread of the per-round ratios.

Ratio = idiomatic script's median / variant's median (above 1: nnparity is
faster). The table gives, per framework and model, each variant's median ratio
over rounds and its per-round range; the "best" line is the variant with the
highest median ratio, and the target is a best ratio of 0.9 or more. This is
a benchmark, not a test: the suite never collects it. `--json PATH` writes
the per-round numbers (atomically). Exit 0 when every best ratio meets the
target, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET = 0.9
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": ("mlp_regression", {"activation": "tanh"}),
    "cnn": ("cnn_classification", {}),
    "lstm": ("rnn_sequence", {"cell": "lstm"}),
    "gru": ("rnn_sequence", {"cell": "gru"}),
}
BACKENDS = ("torch", "jax", "tensorflow")
# variants whose compilation costs minutes on two cores (torch.compile), left out
# unless asked for with --variants
_SLOW = {"torch": ("compile",)}


def _contenders(backend: str, model: str, preset: str, variants: list[str] | None):
    """[(name, kind, call)] for one model: nnparity variants and the bare scripts."""
    import numpy as np

    import impls
    from bench.timing import bare_scripts, measure
    from tasks import get_task
    from tasks.optim import OptimizerSpec
    from tasks.params import init_params

    task_name, knobs = MODELS[model]
    task = get_task(task_name)
    cfg = task.config(preset, knobs)
    spec = task.model(cfg)
    params = init_params(spec, cfg.seed)
    x, y = task.data(cfg).batch(0, cfg.batch_size)
    be = impls.load(backend)
    out = []
    for variant in be.variants:
        if variants is not None and variant not in variants:
            continue
        if variants is None and variant in _SLOW.get(backend, ()):
            continue
        if not be.supports(spec, variant):
            continue
        program = be.build(spec, params, variant=variant, dtype="float32", device="cpu",
                           optimizer=OptimizerSpec(cfg.optimizer, cfg.lr))
        xd, yd = program.put(x), program.put(y)
        out.append((variant, "variant", measure.synced(program, program.loss_and_grads, xd, yd)))
    out.append(("script", "script", bare_scripts.BARE[backend](spec, x, np.asarray(y))))
    if backend == "tensorflow":
        out.append(("script_xla", "script",
                    bare_scripts.bare_tensorflow(spec, x, np.asarray(y), xla=True)))
    return out


def _median_time(call, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _worker(args: argparse.Namespace) -> int:
    """Time every contender of one backend; print one JSON object."""
    from impls.threads import configure

    configure(args.threads)
    import impls

    backend = args.worker
    result: dict[str, Any] = {"backend": backend, "models": {}}
    for model in args.models:
        contenders = _contenders(backend, model, args.preset, args.variants)
        for _, _, call in contenders:  # warm-up: compile and settle, never timed
            for _ in range(args.warmup):
                call()
        rounds: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
        for r in range(args.rounds):
            shift = r % len(contenders)  # rotate so no contender is always first
            for name, _, call in contenders[shift:] + contenders[:shift]:
                rounds[name].append(_median_time(call, args.calls))
        result["models"][model] = {"kinds": {n: k for n, k, _ in contenders},
                                   "round_medians_s": rounds}
    result["threads"] = impls.load(backend).threads()
    print(json.dumps(result))
    return 0


def _ratios(entry: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """variant -> script -> per-round ratio script / variant."""
    kinds, med = entry["kinds"], entry["round_medians_s"]
    scripts = [n for n, k in kinds.items() if k == "script"]
    return {v: {s: [a / b for a, b in zip(med[s], med[v], strict=True)] for s in scripts}
            for v, k in kinds.items() if k == "variant"}


def _relevant_script(backend: str, variant: str, scripts: list[str]) -> str:
    """The script a variant is judged against: XLA variants against the XLA script."""
    if backend == "tensorflow" and "xla" in variant and "script_xla" in scripts:
        return "script_xla"
    return "script"


def table(results: list[dict[str, Any]]) -> tuple[str, bool]:
    """A markdown table of median ratios (range over rounds), and whether all targets hold."""
    lines = ["| framework | model | variant | vs script | median ratio | per-round range "
             "| variant ms | script ms |", "|---|---|---|---|---|---|---|---|"]
    ok = True
    for res in results:
        backend = res["backend"]
        for model, entry in res["models"].items():
            ratios = _ratios(entry)
            med = entry["round_medians_s"]
            best_by_script: dict[str, tuple[float, str]] = {}
            for variant, by_script in ratios.items():
                script = _relevant_script(backend, variant, list(by_script))
                r = by_script[script]
                m = statistics.median(r)
                lines.append(
                    f"| {backend} | {model} | {variant} | {script} | {m:.2f} | "
                    f"{min(r):.2f}-{max(r):.2f} | {statistics.median(med[variant]) * 1e3:.3f} | "
                    f"{statistics.median(med[script]) * 1e3:.3f} |")
                if m > best_by_script.get(script, (-1.0, ""))[0]:
                    best_by_script[script] = (m, variant)
            for script, (m, variant) in best_by_script.items():
                verdict = "ok" if m >= TARGET else f"BELOW {TARGET}"
                ok = ok and m >= TARGET
                lines.append(f"| {backend} | {model} | **best: {variant}** | {script} | "
                             f"**{m:.2f}** | {verdict} | | |")
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timing.idiomatic",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=("tiny", "quick", "standard", "large"))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--variants", default=None, help="only these variants (comma list)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the per-round numbers here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from bench.options import InputError

    try:
        args.models = [m for m in args.models.split(",") if m]
        args.variants = [v for v in args.variants.split(",") if v] if args.variants else None
        backends = [b for b in args.backends.split(",") if b]
        for m in args.models:
            if m not in MODELS:
                raise InputError(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
        for b in backends:
            if b not in BACKENDS:
                raise InputError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
        if min(args.rounds, args.calls) <= 0 or args.warmup < 0:
            raise InputError("--rounds and --calls must be positive, --warmup not negative")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.worker:
        return _worker(args)
    results = []
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(root), os.environ.get("PYTHONPATH", "")]))}
    for backend in backends:
        cmd = [sys.executable, "-m", "bench.timing.idiomatic", "--worker", backend,
               "--preset", args.preset, "--models", ",".join(args.models),
               "--rounds", str(args.rounds), "--calls", str(args.calls),
               "--warmup", str(args.warmup)]
        if args.variants:
            cmd += ["--variants", ",".join(args.variants)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"timing {backend} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{backend}: failed: {tail}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    text, ok = table(results)
    print(f"preset {args.preset}, float32 loss + gradients on CPU, {args.rounds} interleaved "
          f"rounds x {args.calls} calls; ratio = script median / variant median")
    for res in results:
        print(f"- {res['backend']} threads: {res['threads']}")
    print(text)
    if args.json:
        from bench.results.write import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(results, indent=1))
    return 0 if ok and results else 1


if __name__ == "__main__":
    sys.exit(main())
