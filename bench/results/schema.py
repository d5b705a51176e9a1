"""The results format's one definition: cell ids, the per-cell record, the stats block.

A cell id names one timed cell in every run, e.g.
"quick/rnn_sequence[cell=lstm]/torch/eager/cpu/float32/bs64/step": the preset,
the task with its swept or user-set knobs, backend, variant, device, dtype,
batch size and phase. A reduced precision mode joins the dtype segment
("float32+bf16", "float32+tf32", "float32+fp16"); strict cells keep the plain
dtype, so ids written before precision modes existed (and committed
baselines) name the same cells, and a bf16 cell can never match an fp32 one.
Calibration cells (the GEMM that measures a backend's peak) are
"gemm/<backend>/<device>/float32/calibration". `cell_id` writes them and
`parse_cell_id` is the only reader; nothing else splits ids.

`CellRecord` is what every benchmark entry carries as `extra_info`, and
`stats_block` is the one statistic: pytest-benchmark's own `Stats` over the raw
samples, so the report, baselines, history and compare show exactly what
`pytest-benchmark compare` shows for the same file. This module reads, writes
and times nothing, and imports no framework.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from impls.base import STRICT

#: the raw results format's version (docs/results-format.md), written into every file's
#: machine_info["nnparity"]["format_version"]; files without it are version 1
FORMAT_VERSION = 2
PHASES = ("forward", "backward", "step", "first_call")
#: the phases timed in steady state (first_call is timed once, apart)
STEADY_PHASES = PHASES[:3]
CALIBRATION = "calibration"
CALIBRATION_TASK = "gemm"
STAT_FIELDS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr",
               "hd15iqr", "ops", "total")


#: the strict precision mode, which cell ids leave implicit: defined once, in impls.base
STRICT_PRECISION = STRICT
PRECISION_SEP = "+"


def dtype_segment(dtype: str, precision: str = STRICT_PRECISION) -> str:
    """The dtype part of a cell id: the dtype, "+mode" for a reduced precision mode."""
    if not precision or precision == STRICT_PRECISION:
        return dtype
    return f"{dtype}{PRECISION_SEP}{precision}"


def cell_id(preset: str, label: str, backend: str, variant: str, device: str, dtype: str,
            batch_size: int, phase: str, precision: str = STRICT_PRECISION) -> str:
    return (f"{preset}/{label}/{backend}/{variant}/{device}/{dtype_segment(dtype, precision)}"
            f"/bs{batch_size}/{phase}")


def calibration_id(backend: str, device: str) -> str:
    return f"{CALIBRATION_TASK}/{backend}/{device}/float32/{CALIBRATION}"


class CellId(NamedTuple):
    """The parts of a cell id; `preset` and `config` are empty for calibration ids."""

    preset: str
    config: str  # the task with its knobs, e.g. "rnn_sequence[cell=lstm]"
    backend: str
    variant: str
    device: str
    dtype: str
    batch_size: int | None
    phase: str
    precision: str = STRICT_PRECISION  # "fp32" (strict) or a reduced mode: tf32, bf16, fp16

    @property
    def strict(self) -> bool:
        return self.precision == STRICT_PRECISION

    @property
    def group(self) -> str:
        """Preset and task config: the cells that time the same model."""
        return f"{self.preset}/{self.config}" if self.preset else self.config

    @property
    def where(self) -> str:
        """Backend, variant, device, dtype and batch size: a line of a history plot."""
        bs = "" if self.batch_size is None else f"bs{self.batch_size}"
        dtype = dtype_segment(self.dtype, self.precision)
        return "/".join(p for p in (self.backend, self.variant, self.device, dtype, bs) if p)


def parse_cell_id(cell: str) -> CellId:
    """Split a cell id (or a calibration id) into its parts. Ids written before
    the preset led them (seven parts) parse with an empty preset. A task label
    never contains "/", so splitting from the right is unambiguous."""
    parts = str(cell).split("/")
    if len(parts) == 5 and parts[-1] == CALIBRATION:
        return CellId("", parts[0], parts[1], "", parts[2], parts[3], None, CALIBRATION)
    if len(parts) not in (7, 8) or not parts[-2].startswith("bs"):
        raise ValueError(f"not a cell id: {cell!r}")
    preset = parts[0] if len(parts) == 8 else ""
    config, backend, variant, device, dtype, bs, phase = parts[-7:]
    try:
        batch = int(bs[2:])
    except ValueError:
        raise ValueError(f"not a cell id (batch size {bs!r}): {cell!r}") from None
    dtype, sep, precision = dtype.partition(PRECISION_SEP)
    if sep and (not precision or precision == STRICT_PRECISION):
        raise ValueError(f"not a cell id (precision {precision!r}): {cell!r}")
    return CellId(preset, config, backend, variant, device, dtype, batch, phase,
                  precision or STRICT_PRECISION)


def config_label(cell: str) -> str:
    """The task config of a cell id ("gemm" for calibration ids); the id itself
    when it is not one of ours (a foreign pytest-benchmark name)."""
    try:
        return parse_cell_id(cell).config
    except ValueError:
        return str(cell)


@dataclass(frozen=True)
class CellRecord:
    """Everything a benchmark's `extra_info` carries."""

    cell: str
    task: str
    preset: str
    backend: str
    variant: str
    device: str
    dtype: str
    batch_size: int | None
    phase: str
    knobs: dict[str, str] = field(default_factory=dict)
    status: str = "ok"
    error: str = ""
    flops: int | None = None
    flops_per_s: float | None = None
    peak_memory_bytes: int | None = None  # over the cell's own window (bench/timing/measure.py)
    memory_source: str = ""
    memory_method: str = ""  # how the window was isolated: allocator-reset, rss-window, ...
    memory_scope: str = ""  # "allocator" or "process" (a process-wide figure)
    memory_growth_bytes: int | None = None  # peak minus in use when the window opened
    gradcheck: dict[str, Any] = field(default_factory=dict)
    precision: str = ""  # the program's precision label (impls.base.precision_label)
    threads: int | None = None
    retraces: int | None = None
    warmup_calls: int | None = None
    warmup_stable: bool | None = None
    #: the timing settled during warm-up (bench/timing/measure.py); None: not asked
    warmup_settled: bool | None = None
    build_s: float | None = None
    #: first_call cells only: the one-time compiler start-up this process paid just
    #: before the cell, timed apart from it (bench/timing/worker.py); None otherwise
    compiler_startup_s: float | None = None
    gflops: float | None = None  # calibration cells only
    gemm_size: int | None = None  # calibration cells only
    #: the precision mode (impls.base.PRECISIONS); "fp32" is strict
    precision_mode: str = STRICT_PRECISION
    #: float32 cells of a run with reduced modes: loss, gradient and trajectory error
    #: against the float64 reference, with the mode's expected range
    #: (bench.agreement.precision.precision_error); empty otherwise
    precision_error: dict[str, Any] = field(default_factory=dict)
    #: samples each worker process (round) took, in `stats.data` order; empty: one round
    round_sizes: list[int] = field(default_factory=list)
    #: the cell's 0-based position in each round's randomised order, same order as above
    round_positions: list[int] = field(default_factory=list)
    #: the median's 95% interval [low, high] in seconds (bench.results.stats.cell_interval,
    #: rounds then samples resampled); empty when not computed (errors, old files)
    median_ci: list[float] = field(default_factory=list)
    #: "" or why the cell is unstable (IQR >= 10% of the median, rounds > 10% apart)
    unstable: str = ""
    #: a tuned run (`run --settings`): the speed setting the cell ran with; "" = default
    setting: str = ""

    def to_extra_info(self) -> dict[str, Any]:
        info = asdict(self)
        if self.phase != CALIBRATION:
            info.pop("gflops")
            info.pop("gemm_size")
        return info


def stats_block(samples: Any) -> dict[str, Any]:
    """pytest-benchmark's "stats" block for raw samples (seconds), raw data kept.

    Computed by pytest-benchmark's own `Stats`, so a block rebuilt from merged
    samples, and every median and IQR a report prints, match what pytest-benchmark
    writes and `pytest-benchmark compare` shows. No samples: NaN stats (an error cell).
    """
    data = [float(v) for v in samples]
    if not data:
        out: dict[str, Any] = {k: math.nan for k in STAT_FIELDS}
        out.update(rounds=0, iterations=1, iqr_outliers=0, stddev_outliers=0, outliers="0;0",
                   data=[])
        return out
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for value in data:
        stats.update(value)
    out = stats.as_dict()
    out.update(iterations=1, data=data)
    return out
