"""Inside a group process: build programs, time cells, record them.

A `Worker` holds one backend and caches what cells share: the current program
(one per config/variant/device/dtype/precision, rebuilt for `first_call`,
which must see a fresh program), device-resident batches, which variants
have paid their compiler's one-time start-up (`warm_compiler`), and the
gradient-agreement result of each (config, variant, dtype, device), checked
once, not per batch size. A reduced precision mode is not gated by agreement;
its error against float64 (`bench.agreement.precision`) is measured once per
(config, variant, dtype, device, precision) instead, and for strict float32
too when the run has reduced modes, so the two stand side by side. Every
finished cell, ok or error, is streamed to the group's JSON-lines file before
the test returns. Imports frameworks only through `impls.load`;
runs only in the worker process started by the runner.
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.results import write as records
from bench.timing import measure
from bench.timing.matrix import CUDA_GEMM_SIZES, PLANS, Cell, Plan, TaskConfig, plan_from_dict
from tasks import flops, get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params
from tasks.spec import Conv2D, Dense, Flatten, ModelSpec, Recurrent

#: the one-layer programs `Worker.warm_compiler` compiles: a Dense, or for variants
#: that need a recurrent layer (fused RNN layers) a tiny RNN under a Dense
_WARM_SPECS = (
    ModelSpec(input_shape=(4,), layers=(Dense("warm", 4, "identity"),), loss="mse"),
    ModelSpec(input_shape=(3, 2), layers=(Recurrent("warm", "rnn", 2, return_sequences=False),
                                          Dense("warm_out", 1, "identity")), loss="mse"),
)
#: ... and for a model with convolutions, a tiny one: a library's first convolution in a
#: process pays a one-time set-up (torch CNN, quick: the process's first `first_call`
#: took 8-13 ms in ten runs, the next variant's 2.3 ms; with this warm-up 6.0 against
#: 2.5 ms. What remains is per shape: oneDNN caches a convolution's primitives by shape
#: for every variant of the process, so the first variant to run a shape pays them)
_WARM_CONV = ModelSpec(input_shape=(1, 4, 4), layers=(
    Conv2D("warm", 1, 3, padding="same", activation="relu"), Flatten("warm_flat"),
    Dense("warm_out", 1, "identity")), loss="mse")


def _warm_kind(spec: ModelSpec) -> str:
    """Which one-time set-up a model's first call would pay: convolutions, or not."""
    return "conv" if any(isinstance(layer, Conv2D) for layer in spec.layers) else "dense"


def _flops(spec: ModelSpec, cfg: Any, phase: str, batch_size: int) -> int | None:
    if phase == "forward":
        return flops.forward_flops(spec, batch_size)
    if phase == "backward":
        return flops.train_flops(spec, batch_size)
    if phase == "step":
        return flops.step_flops(spec, batch_size, cfg.optimizer)
    return None


def _precision_error(cfg: TaskConfig, preset: str, backend: str, variant: str, dtype: str,
                     device: str, precision: str) -> dict[str, Any]:
    from bench.agreement.precision import precision_error  # imports frameworks lazily

    result = precision_error(cfg.task, preset, dict(cfg.overrides), backend, variant, dtype,
                             device, precision)
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()}


def _gradcheck(cfg: TaskConfig, preset: str, backend: str, variant: str, dtype: str,
               device: str) -> dict[str, Any]:
    from bench.agreement.check import check_cell  # imports the frameworks' checks lazily

    result = check_cell(cfg.task, preset, dict(cfg.overrides), backend, variant, dtype, device)
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()}


def fresh_compile_caches() -> str | None:
    """Give this process empty on-disk compile caches for torch: `first_call` times a
    cold compile, as JAX and TensorFlow (no persistent cache by default) do. Inductor
    otherwise serves graphs and kernels that any earlier run on this machine compiled
    (its default cache outlives processes): the standard torch/compile sigmoid MLP's
    first call measured 22.9 s with an empty cache and 11.5 s right after another run.
    The directory is removed when the process exits. A user's own
    TORCHINDUCTOR_CACHE_DIR is kept (returns None)."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return None
    path = tempfile.mkdtemp(prefix="nnparity-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(path, "triton"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _build_extra(cell: Cell) -> dict[str, Any]:
    """`Backend.build` keywords beyond the cell's variant, dtype and device: a reduced
    precision mode, and a tuned run's build options (`run --settings`)."""
    extra: dict[str, Any] = {} if cell.precision == "fp32" else {"precision": cell.precision}
    if cell.options:
        extra["options"] = dict(cell.options)
    return extra


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        import impls

        self.preset: str = spec["preset"]
        plan = spec.get("plan")
        self.plan: Plan = plan_from_dict(plan) if plan else PLANS[self.preset]
        self.threads: int = spec["threads"]
        self.seed: int = spec.get("seed", 0)
        self.stream = Path(spec["stream"])
        self.check = bool(spec.get("gradcheck", True))
        self.precision_errors = bool(spec.get("precision_errors", False))
        self.backend_name: str = spec["group"]["backend"]
        if self.backend_name == "torch":  # before torch is imported
            fresh_compile_caches()
        self.backend = impls.load(self.backend_name)
        self._program: tuple[tuple, Any] | None = None
        self._batches: dict[tuple, tuple[Any, Any]] = {}
        self._gradchecks: dict[tuple, dict[str, Any]] = {}
        self._precision_errors: dict[tuple, dict[str, Any]] = {}
        #: (variant, device, layer kind) past the compiler's and the library's start-up
        self._warmed: set[tuple[str, str, str]] = set()

    # -- shared state -------------------------------------------------------------------

    def _build(self, cell: Cell) -> tuple[Any, Any, Any, float]:
        task = get_task(cell.config.task)
        cfg = task.config(self.preset, dict(cell.config.overrides))
        spec = task.model(cfg)
        params = init_params(spec, seed=self.seed)
        optimizer = OptimizerSpec(name=cfg.optimizer, lr=cfg.lr)
        start = time.perf_counter()
        extra = _build_extra(cell)
        program = self.backend.build(spec, params, variant=cell.variant, dtype=cell.dtype,
                                     device=cell.device, optimizer=optimizer, **extra)
        return program, cfg, spec, time.perf_counter() - start

    def program_for(self, cell: Cell) -> tuple[Any, Any, Any, float | None]:
        key = (cell.config, cell.variant, cell.device, cell.dtype, cell.precision,
               cell.options)
        if self._program is not None and self._program[0] == key and cell.phase != "first_call":
            program, cfg, spec = self._program[1]
            return program, cfg, spec, None
        self._program = None
        self._batches.clear()
        gc.collect()
        program, cfg, spec, build_s = self._build(cell)
        self._program = (key, (program, cfg, spec))
        return program, cfg, spec, build_s

    def warm_compiler(self, cell: Cell) -> float | None:
        """Before the first `first_call` of a variant, device and layer kind (a model with
        convolutions or without) in this process: build a one-layer program of that
        variant (a tiny convolution for a CNN) and take one step, so that the cell's first
        call carries its own compile, not the compiler's one-time start-up (torch.compile
        paid it all in whichever configuration came first: 13.0 s for the sigmoid MLP
        against 3.9 s for relu and tanh). Returns the seconds that took (the start-up
        plus the tiny program's own compile), or None when already paid or when the tiny
        program could not run (the cell itself then shows any real error)."""
        task = get_task(cell.config.task)
        kind = _warm_kind(task.model(task.config(self.preset, dict(cell.config.overrides))))
        key = (cell.variant, cell.device, kind)
        if key in self._warmed:
            return None
        self._warmed.add(key)
        candidates = (_WARM_CONV, *_WARM_SPECS) if kind == "conv" else _WARM_SPECS
        specs = [s for s in candidates if self.backend.supports(s, cell.variant)]
        if not specs:
            return None
        spec = specs[0]
        extra = _build_extra(cell)
        start = time.perf_counter()
        try:
            program = self.backend.build(spec, init_params(spec, seed=self.seed),
                                         variant=cell.variant, dtype=cell.dtype,
                                         device=cell.device, optimizer=OptimizerSpec(), **extra)
            x = program.put(np.zeros((2, *spec.input_shape)))
            y = program.put(np.zeros((2, *spec.output_shape)))
            measure.synced(program, program.step, x, y)()
        except Exception:
            return None
        return time.perf_counter() - start

    def batch(self, program: Any, cell: Cell, cfg: Any) -> tuple[Any, Any]:
        key = (cell.batch_size,)
        if key not in self._batches:
            x, y = get_task(cell.config.task).data(cfg).batch(0, cell.batch_size)
            self._batches[key] = (program.put(x), program.put(y))
            program.sync(self._batches[key][0])
        return self._batches[key]

    def gradcheck(self, cell: Cell) -> dict[str, Any]:
        if not self.check:
            return {"passed": None, "max_rel_err": None, "error": "skipped (--no-gradcheck)"}
        if cell.precision != "fp32":  # the gate stays strict: reduced modes are measured
            return {"passed": None, "max_rel_err": None,
                    "error": f"not gated: {cell.precision} is measured (precision error)"}
        key = (cell.config, cell.variant, cell.dtype, cell.device)
        if key not in self._gradchecks:
            self._gradchecks[key] = _gradcheck(cell.config, self.preset, cell.backend,
                                               cell.variant, cell.dtype, cell.device)
        return self._gradchecks[key]

    def precision_error(self, cell: Cell) -> dict[str, Any]:
        """The cell's error against float64: reduced modes always, strict float32 when
        the run has reduced modes; {} otherwise (and with --no-gradcheck)."""
        reduced = cell.precision != "fp32"
        if not self.check or cell.dtype != "float32" or not (reduced or self.precision_errors):
            return {}
        key = (cell.config, cell.variant, cell.dtype, cell.device, cell.precision)
        if key not in self._precision_errors:
            self._precision_errors[key] = _precision_error(
                cell.config, self.preset, cell.backend, cell.variant, cell.dtype, cell.device,
                cell.precision)
        return self._precision_errors[key]

    # -- cells --------------------------------------------------------------------------

    def time_cell(self, benchmark: Any, cell: Cell) -> None:
        try:
            values = self._time_cell(benchmark, cell)
        except Exception as exc:
            self._program = None  # a failed program may be in a bad state
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            rec = records.record_for(cell, self.preset, self.threads, status="error",
                                     error=message)
            records.append_stream(self.stream, records.benchmark_entry(rec))
            pytest.fail(f"{cell.id}: {message}\n{traceback.format_exc(limit=3)}", pytrace=False)
        rec = records.record_for(cell, self.preset, self.threads, **values)
        self._finish(benchmark, rec)

    def _time_cell(self, benchmark: Any, cell: Cell) -> dict[str, Any]:
        startup = self.warm_compiler(cell) if cell.phase == "first_call" else None
        program, cfg, spec, build_s = self.program_for(cell)
        x, y = self.batch(program, cell, cfg)
        call = {
            "forward": lambda: measure.synced(program, program.forward, x),
            "backward": lambda: measure.synced(program, program.loss_and_grads, x, y),
            "step": lambda: measure.synced(program, program.step, x, y),
            "first_call": lambda: measure.synced(program, program.step, x, y),
        }[cell.phase]()
        call = measure.with_test_delay(call, cell.backend)
        counter = measure.CompileCounter(program)
        gc.collect()  # before the window opens: an earlier cell's garbage is not this cell's
        window = measure.start_memory_window(program)
        if cell.phase == "first_call":
            warm = measure.WarmUp(0, 0.0, True)
            before = None
            benchmark.pedantic(call, rounds=1, iterations=1, warmup_rounds=0)
        else:
            warm = measure.warm_up(call, counter, self.plan)
            before = counter.count()
            rounds = measure.rounds_for(warm.last_s, self.plan)
            benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0)
        after = counter.count()
        memory = measure.peak_memory(program, cell.backend, cell.device, window)
        flops = _flops(spec, cfg, cell.phase, cell.batch_size)
        median = float(np.median(benchmark.stats.stats.data))
        return dict(
            flops=flops,
            flops_per_s=(flops / median if flops and median > 0 else None),
            peak_memory_bytes=memory.peak_bytes,
            memory_source=memory.source,
            memory_method=memory.method,
            memory_scope=memory.scope,
            memory_growth_bytes=memory.growth_bytes,
            gradcheck=self.gradcheck(cell),
            precision=getattr(program, "precision", ""),
            precision_error=self.precision_error(cell),
            retraces=(after - before if before is not None and after is not None else None),
            warmup_calls=warm.calls,
            warmup_stable=warm.stable,
            warmup_settled=warm.settled,
            build_s=build_s,
            compiler_startup_s=startup,
        )

    def _finish(self, benchmark: Any, rec: records.CellRecord) -> None:
        benchmark.extra_info.update(rec.to_extra_info())
        entry = benchmark.stats.as_dict(include_data=True)
        records.append_stream(self.stream, entry)

    def calibrate(self, benchmark: Any, device: str) -> None:
        """Best float32 GEMM rate through this backend's dense layer (x @ W + b)."""
        sizes = CUDA_GEMM_SIZES if device == "cuda" else self.plan.gemm_sizes
        best: tuple[float, int, str, Any] | None = None
        try:
            for n in sizes:
                spec = ModelSpec(input_shape=(n,), layers=(Dense("gemm", n, "identity"),),
                                 loss="mse")
                params = init_params(spec, seed=self.seed)
                for variant in self.backend.variants:
                    if not self.backend.supports(spec, variant):
                        continue
                    program = self.backend.build(spec, params, variant=variant, dtype="float32",
                                                 device=device, optimizer=OptimizerSpec())
                    x = program.put(np.random.default_rng(self.seed).standard_normal((n, n)))
                    call = measure.synced(program, program.forward, x)
                    measure.warm_up(call, measure.CompileCounter(program), self.plan)
                    fastest = min(measure.bare_loop(call, 3))
                    rate = 2.0 * n**3 / fastest
                    if best is None or rate > best[0]:
                        best = (rate, n, variant, call)
            assert best is not None, "no variant of this backend can run a dense layer"
            _, n, variant, call = best
            rounds = max(5, min(50, self.plan.min_rounds))
            benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
            gflops = 2.0 * n**3 / min(benchmark.stats.stats.data) / 1e9
            rec = records.calibration_record(
                self.backend_name, device, self.preset, self.threads, variant=variant,
                gflops=gflops, gemm_size=n, flops=2 * n**3,
                flops_per_s=2.0 * n**3 / float(np.median(benchmark.stats.stats.data)))
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            rec = records.calibration_record(self.backend_name, device, self.preset,
                                             self.threads, status="error", error=message)
            records.append_stream(self.stream, records.benchmark_entry(rec))
            pytest.fail(f"calibration {device}: {message}", pytrace=False)
        self._finish(benchmark, rec)
