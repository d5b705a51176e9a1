"""Each cell's peak memory is its own window's (issue 9).

On a CPU machine JAX keeps no allocator statistics (`memory_stats()` is None),
so a JAX cell's figure is the process's resident-set high-water mark over the
cell's window (VmHWM reset through /proc/self/clear_refs when the window
opens): the whole process at its highest point inside the window. The test
shows that a small cell measured after a much larger one does not carry the
larger one's allocations, which a lifetime figure (ru_maxrss, or JAX's
lifetime `peak_bytes_in_use` on a GPU) would. The allocator paths are checked
with a stand-in program, since no GPU is present here.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from bench.timing import measure
from tasks.optim import OptimizerSpec
from tasks.params import init_params
from tasks.spec import Dense, ModelSpec


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cell(backend, width: int, batch: int) -> measure.Memory:
    """Build, then time-window a few steps, the way the worker does."""
    spec = ModelSpec(input_shape=(width,), layers=(Dense("d0", width, "relu"),
                                                   Dense("d1", 1, "identity")), loss="mse")
    program = backend.build(spec, init_params(spec, 0), variant="jit", dtype="float32",
                            device="cpu", optimizer=OptimizerSpec("sgd", 0.01))
    rng = np.random.default_rng(0)
    x = program.put(rng.standard_normal((batch, width)))
    y = program.put(rng.standard_normal((batch, 1)))
    program.sync(x)
    gc.collect()
    window = measure.start_memory_window(program)
    for _ in range(2):
        program.sync(program.step(x, y))
    memory = measure.peak_memory(program, "jax", "cpu", window)
    del program, x, y
    gc.collect()
    return memory


@pytest.mark.skipif(not _clear_refs_works(), reason="needs Linux /proc/self/clear_refs")
def test_a_jax_cells_peak_excludes_an_earlier_larger_cell() -> None:
    jax_backend = pytest.importorskip("impls.jax").BACKEND
    if jax_backend.devices() != ("cpu",):
        pytest.skip("this checks the CPU (RSS window) path")
    # narrow and tall: ~67 MB per activation for ~0.5 GFLOP per matmul
    big = _cell(jax_backend, width=16, batch=2**20)
    small = _cell(jax_backend, width=16, batch=8)
    assert big.method == small.method == "rss-window" and small.scope == "process"
    # the big cell's own calls needed at least 60 MB beyond what was resident ...
    assert big.growth_bytes > 60e6
    # ... and none of that is in the small cell's figure, measured afterwards
    assert small.peak_bytes < big.peak_bytes - 60e6
    assert small.growth_bytes < 20e6


class _Allocator:
    """A program whose allocator peak is scripted: (value at window start, at end)."""

    def __init__(self, scope: str, start: int, end: int) -> None:
        self.peak_memory_scope = scope
        self._values = [start, end]

    def reset_peak_memory(self) -> None:
        return None

    def peak_memory(self) -> int:
        return self._values.pop(0)


def test_allocator_windows_say_how_they_were_measured() -> None:
    resetting = _Allocator("window", 10, 500)
    mem = measure.peak_memory(resetting, "torch", "cuda", measure.start_memory_window(resetting))
    assert (mem.peak_bytes, mem.method, mem.scope) == (500, "allocator-reset", "allocator")
    # JAX on a GPU: a window that raises the lifetime peak measured exactly that peak
    rising = _Allocator("lifetime", 2_000, 3_000)
    mem = measure.peak_memory(rising, "jax", "cuda", measure.start_memory_window(rising))
    assert (mem.peak_bytes, mem.method, mem.scope) == (3_000, "allocator-new-peak", "allocator")
    # one that does not is only bounded by an earlier cell: marked process-wide
    flat = _Allocator("lifetime", 2_000, 2_000)
    mem = measure.peak_memory(flat, "jax", "cuda", measure.start_memory_window(flat))
    assert (mem.method, mem.scope) == ("allocator-lifetime", "process")
