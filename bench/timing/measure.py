"""Timing one cell: warm up until nothing recompiles and the timing has settled, then
pedantic rounds on pytest-benchmark.

The timed target is always `program.sync(result)` wrapped around the call, so
asynchronous frameworks are measured to completion. Warm-up calls are never
timed into the samples. Warm-up goes on until the program's compile count stops
changing (at least `Plan.min_warmup` calls; a program still recompiling after
`Plan.max_warmup` calls is timed anyway and flagged) AND the timing has settled:
the median of the last `SETTLE_WINDOW` calls within `SETTLE_TOLERANCE` of the
median of the `SETTLE_WINDOW` before them (caches, allocator pools and
frequency take a few calls to settle: a cell seen at 6-9 ms for 9 calls, then
3.7 ms). Settling is capped at `settle_cap_s(plan)` seconds and
`SETTLE_MAX_CALLS` calls; whether it settled is recorded. The settled calls'
median sizes the number of samples to the plan's time budget. Compiles during
the timed rounds are counted as retraces, the report flags any.

Peak memory is measured over each cell's own window (its warm-up and timed
calls; the program and the batch already exist when it opens), and every
record says how (`Memory.method`) and over what (`Memory.scope`):

- "allocator-reset": the framework's device allocator, its peak counter reset
  when the window opens (torch and TensorFlow on CUDA). Scope "allocator".
- "allocator-new-peak": JAX's allocator cannot reset its peak, which is the
  process lifetime's; when the window raises it, that new peak is the
  window's (exact, by difference of the lifetime peak). Scope "allocator".
- "allocator-lifetime": JAX's window did not raise the lifetime peak, so the
  figure is only an upper bound set by some earlier cell. Scope "process".
- "rss-window": no allocator statistics (every framework on CPU, JAX on CPU
  included): the process's resident-set high-water mark (VmHWM), reset to
  the current RSS through /proc/self/clear_refs when the window opens. It
  counts the whole process (interpreter, framework libraries, the program)
  at its highest point inside the window, so its scope is "process"; an
  earlier cell's memory counts only if it is still resident (freed buffers
  that went back to the OS do not). `growth_bytes` is that peak minus the RSS
  when the window opened: what the cell's own calls added.
- "rss-lifetime": clear_refs was refused, so VmHWM is the process lifetime's.

This module imports no framework at import time; it looks at the ones a
backend has already imported (sys.modules) to count compiles. It writes nothing.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.timing.matrix import Plan

Call = Callable[[], Any]


@dataclass(frozen=True)
class WarmUp:
    calls: int
    last_s: float  # a warm call's duration (the settled calls' median), sizes the rounds
    stable: bool  # the compile count did not change on the last call
    settled: bool | None = None  # the timing settled before the cap (None: not asked)


#: warm-up ends when the median of the last SETTLE_WINDOW calls is within
#: SETTLE_TOLERANCE of the median of the SETTLE_WINDOW calls before them
SETTLE_WINDOW = 3
SETTLE_TOLERANCE = 0.05
#: settling stops at this many calls past the compile warm-up, or at settle_cap_s
SETTLE_MAX_CALLS = 60
SETTLE_MIN_S = 0.05


def settle_cap_s(plan: Plan) -> float:
    """Seconds of settling calls a cell may spend: twice its timed budget, at least 0.05 s."""
    return max(2.0 * plan.budget_s, SETTLE_MIN_S)


def settled(durations: list[float], window: int = SETTLE_WINDOW,
            tolerance: float = SETTLE_TOLERANCE) -> bool:
    """Whether the last `window` durations' median is within `tolerance` of the
    median of the `window` before them."""
    if len(durations) < 2 * window:
        return False
    now = sorted(durations[-window:])[window // 2]
    before = sorted(durations[-2 * window:-window])[window // 2]
    return before > 0 and abs(now / before - 1.0) <= tolerance


@dataclass(frozen=True)
class Memory:
    peak_bytes: int | None
    source: str  # "torch.cuda", "jax.cuda", "rss", ...
    method: str = ""  # how the window was isolated (module docstring)
    scope: str = ""  # "allocator" (the framework's own bytes) or "process" (process-wide)
    growth_bytes: int | None = None  # peak minus what was in use when the window opened


@dataclass(frozen=True)
class MemoryWindow:
    """What was in use when a cell's memory window opened."""

    rss_reset: bool  # VmHWM was reset to the current RSS
    rss_start: int | None
    native_start: int | None  # the allocator's peak counter after any reset


_JAX_COMPILES = [0]
_JAX_LISTENING = [False]


def _listen_to_jax() -> None:
    """Count XLA compilations process-wide (jax emits an event per backend compile)."""
    if _JAX_LISTENING[0] or "jax" not in sys.modules:
        return
    import jax.monitoring

    def on_event(event: str, _duration: float, **_kw: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            _JAX_COMPILES[0] += 1

    jax.monitoring.register_event_duration_secs_listener(on_event)
    _JAX_LISTENING[0] = True


class CompileCounter:
    """How many times a program's functions have been traced or compiled so far.

    Sources, summed: the program's own `tracing_counts()` (TensorFlow's programs),
    jax's compile events, and torch dynamo's unique-graph counter. `count()` is None
    when no source applies (eager-only frameworks cannot retrace)."""

    def __init__(self, program: Any) -> None:
        self.program = program
        _listen_to_jax()

    def count(self) -> int | None:
        total, known = 0, False
        counts = getattr(self.program, "tracing_counts", None)
        if callable(counts):
            total += sum(int(v) for v in counts().values())
            known = True
        if _JAX_LISTENING[0]:
            total += _JAX_COMPILES[0]
            known = True
        dynamo = sys.modules.get("torch._dynamo.utils")
        if dynamo is not None:
            total += int(dynamo.counters["stats"]["unique_graphs"])
            known = True
        return total if known else None


# "BACKEND:SECONDS": add a delay to every timed call of one backend. Only for
# demonstrating and testing the regression gate; never set in a real run.
TEST_DELAY_ENV = "NNPARITY_TEST_DELAY"


# "BACKEND": every timed call of that backend raises. Only for testing that a run
# with crashing cells keeps its records and exits 1; never set in a real run.
TEST_CRASH_ENV = "NNPARITY_TEST_CRASH"


def with_test_delay(call: Call, backend: str) -> Call:
    """`call`, slowed by the delay NNPARITY_TEST_DELAY names for `backend` (if any),
    or made to raise when NNPARITY_TEST_CRASH names `backend`."""
    if os.environ.get(TEST_CRASH_ENV) == backend:

        def crash() -> None:
            raise RuntimeError(f"{TEST_CRASH_ENV}={backend}: injected crash")

        return crash
    name, _, seconds = os.environ.get(TEST_DELAY_ENV, "").partition(":")
    if name != backend or not seconds:
        return call
    delay = float(seconds)

    def slowed() -> None:
        call()
        time.sleep(delay)

    return slowed


def synced(program: Any, fn: Callable[..., Any], *args: Any) -> Call:
    """The timed target: the call and the backend's synchronisation on its result."""
    sync = program.sync

    def call() -> None:
        sync(fn(*args))

    return call


def warm_up(call: Call, counter: CompileCounter, plan: Plan) -> WarmUp:
    """Warm up (module docstring): until the compile count is stable and the timing
    has settled, within the caps."""
    before = counter.count()
    calls, last, stable, done = 0, 0.0, False, False
    steady: list[float] = []  # durations since the compile count last changed
    settle_s, cap_s = 0.0, settle_cap_s(plan)
    while True:
        start = time.perf_counter()
        call()
        last = time.perf_counter() - start
        calls += 1
        now = counter.count()
        stable = now == before
        before = now
        if not stable:
            steady, settle_s = [], 0.0
            if calls >= plan.max_warmup:
                break  # still recompiling: timed anyway, flagged by warmup_stable
            continue
        steady.append(last)
        if calls < plan.min_warmup:
            continue
        if settled(steady):
            done = True
            break
        settle_s += last
        if settle_s >= cap_s or calls >= plan.max_warmup + SETTLE_MAX_CALLS:
            break
    warm = sorted(steady[-SETTLE_WINDOW:])[len(steady[-SETTLE_WINDOW:]) // 2] if steady else last
    return WarmUp(calls, warm, stable, done)


def rounds_for(last_s: float, plan: Plan) -> int:
    if last_s <= 0:
        return plan.max_rounds
    return max(plan.min_rounds, min(plan.max_rounds, math.ceil(plan.budget_s / last_s)))


def _proc_status_bytes(field: str) -> int | None:
    """A "kB" field of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_memory_window(program: Any) -> MemoryWindow:
    """Open a cell's memory window: reset what can be reset, note what cannot."""
    program.reset_peak_memory()
    try:  # "5" resets VmHWM, the peak RSS, to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        reset = True
    except OSError:
        reset = False
    return MemoryWindow(reset, _proc_status_bytes("VmRSS"), program.peak_memory())


def peak_memory(program: Any, backend: str, device: str, window: MemoryWindow) -> Memory:
    """The cell's peak over the window `start_memory_window` opened (module docstring)."""
    native = program.peak_memory()
    if native is not None:
        source = f"{backend}.{device}"
        if getattr(program, "peak_memory_scope", "window") == "window":
            return Memory(int(native), source, "allocator-reset", "allocator")
        start = window.native_start
        if start is None or native > start:
            return Memory(int(native), source, "allocator-new-peak", "allocator")
        return Memory(int(native), source, "allocator-lifetime", "process")
    hwm = _proc_status_bytes("VmHWM")
    if hwm is None:  # not Linux: getrusage's lifetime maximum (KiB on Linux, bytes on macOS)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return Memory(int(rss * (1 if sys.platform == "darwin" else 1024)), "rss",
                      "rss-lifetime", "process")
    growth = hwm - window.rss_start if window.rss_start is not None else None
    method = "rss-window" if window.rss_reset else "rss-lifetime"
    return Memory(int(hwm), "rss", method, "process", growth if window.rss_reset else None)


def bare_loop(call: Call, rounds: int) -> list[float]:
    """The reference the harness is checked against: perf_counter around each call."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out
