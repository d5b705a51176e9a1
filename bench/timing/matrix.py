"""The benchmark matrix: which cells a run times, grouped one process per (backend, task).

A cell is one (task + knobs, backend, variant, device, dtype, precision mode,
batch size, phase);
its `id` is the canonical string that names it in every run, e.g.
"quick/rnn_sequence[cell=lstm]/torch/eager/cpu/float32/bs64/step". Only swept or
user-set knobs appear in the id, sorted, so the same dimensions give the same id;
the preset leads, since the same knobs under another preset are another model size.
A reduced precision mode (tf32, bf16, fp16) joins the dtype segment
("float32+bf16"); a combination a backend does not offer (NumPy bf16, tf32 on
CPU, any reduced mode of float64) is no cell at all: `not_applicable` lists
them, and the report shows them as n/a.

The per-preset `Plan` fixes the timing budget and which phases sweep the batch
size: the batch-size sweep runs for `step` only (the phase users compare
throughput on), every other phase at the preset's main batch size; quick keeps
a small time budget per cell so a full run stays within minutes on two cores
(README's quick start states the measured time).

Backends are described (variants, devices, support per model) by the worker
process, which imports frameworks; this module only combines those
descriptions with the user's filters. It must not import a framework or time anything.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

from bench.options import task_overrides
from bench.results.schema import PHASES, STRICT_PRECISION, cell_id
from tasks import get_task
from tasks.spec import SpecError


class MatrixError(SpecError):
    """A bad selection (unknown value, bad -k expression): exit code 2."""


@dataclass(frozen=True)
class Plan:
    """How hard each cell is timed under a preset, and how wide the matrix is."""

    budget_s: float  # target timed seconds per cell (rounds = budget / warm call time)
    min_rounds: int
    max_rounds: int
    min_warmup: int  # warm-up calls before timing, at least
    max_warmup: int  # stop warming up even if the call still recompiles
    # every value of a task's swept knobs (True), of the named ones, or none (default only)
    sweep_knobs: bool | tuple[str, ...] = True
    sweep_phases: tuple[str, ...] = ("step",)  # phases timed at every batch size
    # (variant, task or "*") left out unless --variants names the variant
    skip: tuple[tuple[str, str], ...] = ()
    gemm_sizes: tuple[int, ...] = (512, 1024)  # calibration GEMM sizes on CPU
    timeout_s: float = 600.0  # default per-group timeout (per worker process)
    # independent worker processes per group ("rounds"), each timing every cell of the
    # group in its own seeded random order with 1/rounds of the budget: a cell's
    # interval then sees how much it moves from one process to the next
    rounds: int = 1
    # then up to this many more rounds, each of only the steady cells whose 95% interval
    # is still wider than +-target_ci of their median (adaptive sampling)
    extra_rounds: int = 0
    target_ci: float = 0.03


# torch.compile costs 10-20 s per function and shape for an MLP on two cores and
# over a minute for a 50-step unrolled recurrence, recompiled for every batch size:
# quick leaves it out, standard leaves it out for RNNs (ask with --variants compile).
# jax's scan_unroll recompiles an 8x unrolled loop per batch size (~2 s each), so
# quick leaves it out too, to stay under three minutes on two cores. keras_xla is the
# XLA twin of keras_layers (one XLA compile per model and batch size): quick keeps
# keras_layers and the primitive xla variant, and leaves the pair's product out.
_SLOW_COMPILE = (("compile", "*"), ("scan_unroll", "*"), ("keras_xla", "*"))
PLANS: dict[str, Plan] = {
    "tiny": Plan(0.01, 3, 10, 1, 5, sweep_knobs=False, sweep_phases=(), gemm_sizes=(128,),
                 timeout_s=120),
    # quick covers all three recurrent cells (docs/design.md §2) but one MLP activation
    "quick": Plan(0.05, 5, 50, 2, 10, sweep_knobs=("cell",), skip=_SLOW_COMPILE,
                  timeout_s=300, rounds=2, extra_rounds=1),
    "standard": Plan(0.3, 10, 300, 3, 20, skip=(("compile", "rnn_sequence"),),
                     gemm_sizes=(512, 1024, 2048), timeout_s=900, rounds=3, extra_rounds=1),
    "large": Plan(1.0, 10, 1000, 3, 20, gemm_sizes=(1024, 2048, 4096), timeout_s=3600,
                  rounds=3, extra_rounds=2),
}
CUDA_GEMM_SIZES = (2048, 4096, 8192)


@dataclass(frozen=True)
class TaskConfig:
    """One task with its knob values resolved for a preset."""

    task: str
    knobs: tuple[tuple[str, str], ...]  # swept and user-set knobs, sorted, canonical strings
    overrides: tuple[tuple[str, str], ...]  # everything passed to task.config
    batch_size: int
    batch_sizes: tuple[int, ...]
    # part of every cell id: the same knobs under another preset are another model size
    preset: str = ""

    @property
    def label(self) -> str:
        if not self.knobs:
            return self.task
        return f"{self.task}[{','.join(f'{k}={v}' for k, v in self.knobs)}]"


@dataclass(frozen=True)
class Cell:
    config: TaskConfig
    backend: str
    variant: str
    device: str
    dtype: str
    batch_size: int
    phase: str
    precision: str = STRICT_PRECISION
    #: a tuned run (`run --settings`): the speed setting this cell runs with ("" = the
    #: default) and the build options it passes (`Backend.build(options=)`); not in the
    #: id, so a tuned run compares cell by cell with a default one
    setting: str = ""
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        return cell_id(self.config.preset, self.config.label, self.backend, self.variant,
                       self.device, self.dtype, self.batch_size, self.phase, self.precision)


@dataclass(frozen=True)
class ProcessSetting:
    """What a process-scope speed setting changes in a worker before the framework loads."""

    name: str
    env: tuple[tuple[str, str], ...] = ()
    xla_flags: tuple[str, ...] = ()
    unset: tuple[str, ...] = ()
    #: intra-op threads, one of impls.settings.THREAD_CHOICES ("1", "half", "all"),
    #: resolved on the machine that runs the worker ("" = the run's)
    threads: str = ""


@dataclass(frozen=True)
class Group:
    """One worker process: a backend on a task, plus its calibration cells."""

    backend: str
    task: str
    cells: tuple[Cell, ...]
    calibrate_devices: tuple[str, ...] = ()
    error: str = ""  # set when the backend cannot run at all (not installed, import error)
    # a group split by device for a cluster (bench/distributed) carries its device here
    part: str = ""
    #: a tuned run's process setting for this backend (bench/timing/tuning.py), applied by
    #: the worker before the framework is imported; None: the default process
    process: ProcessSetting | None = None

    @property
    def name(self) -> str:
        return f"{self.backend}_{self.task}" + (f"_{self.part}" if self.part else "")

    @property
    def size(self) -> int:
        return len(self.cells) + len(self.calibrate_devices)


@dataclass(frozen=True)
class Selection:
    tasks: tuple[str, ...]
    backends: tuple[str, ...]
    variants: tuple[str, ...] | None  # None: every variant
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    phases: tuple[str, ...]
    preset: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    keyword: str | None = None
    precisions: tuple[str, ...] = (STRICT_PRECISION,)
    #: a tuned run's label (`run --settings`): (backend, setting) pairs and ("source", how
    #: they were chosen); () for a run with every framework's defaults
    settings: tuple[tuple[str, str], ...] = ()




def _canonical(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def task_configs(task_name: str, preset: str, overrides: Mapping[str, str],
                 sweep: bool | tuple[str, ...] | None = None) -> list[TaskConfig]:
    """Every knob combination the run sweeps for one task (user-set knobs are not swept;
    without `sweep` the preset's default value of each swept knob is used)."""
    task = get_task(task_name)
    sweep = PLANS[preset].sweep_knobs if sweep is None else sweep
    own = task_overrides(task_name, overrides)
    base = task.config(preset, own)
    swept = {k: (tuple(v) if sweep is True or (sweep and k in sweep) else (getattr(base, k),))
             for k, v in task.sweep.items() if k not in own}
    configs = []
    for combo in itertools.product(*swept.values()):
        values = {**own, **dict(zip(swept, combo, strict=True))}
        cfg = task.config(preset, values)
        shown = sorted(values)
        configs.append(TaskConfig(
            task=task_name,
            knobs=tuple((k, _canonical(getattr(cfg, k))) for k in shown),
            overrides=tuple(sorted((k, _canonical(v)) for k, v in values.items())),
            batch_size=cfg.batch_size,
            batch_sizes=tuple(cfg.batch_sizes),
            preset=preset,
        ))
    return configs


#: one word of the -k language (pytest's own grammar for an identifier)
_KEYWORD_WORD = re.compile(r"(?:\w|:|\+|-|\.|\[|\]|\\|/)+")
_KEYWORD_RESERVED = {"and", "or", "not", "true", "false", "none"}


def keyword_matcher(expr: str | None) -> Callable[[str], bool]:
    """pytest's -k language over cell ids: each name matches as a case-insensitive substring."""
    if not expr:
        return lambda _id: True
    # pytest's own parser, so -k means exactly what it means to pytest users
    from _pytest.mark.expression import Expression

    try:
        compiled = Expression.compile(expr)
    except (SyntaxError, ValueError) as exc:
        reason = getattr(exc, "msg", None) or getattr(exc, "message", None) or str(exc)
        raise MatrixError(f"bad -k expression {expr!r}: {reason}") from None

    def match(cid: str) -> bool:
        low = cid.lower()
        return compiled.evaluate(lambda name, **_kw: name.lower() in low)

    return match


def keyword_for(cells: list[str]) -> str:
    """A pytest `-k` expression that selects each of these cell ids.

    An id such as `quick/rnn_sequence[cell=lstm]/torch/eager/cpu/float32/bs64/step`
    holds characters -k cannot spell (`=`, `,`), so each id becomes the `and` of its
    spellable pieces, all of which are substrings of it; the ids are `or`-ed. That
    may select a few more cells than asked (never fewer), and the caller keeps
    only the ones it asked for. Every revision with a `-k` option understands it.
    """
    terms = []
    for cid in sorted(set(cells)):
        words = [w for w in _KEYWORD_WORD.findall(cid) if w.lower() not in _KEYWORD_RESERVED]
        if words:
            terms.append("(" + " and ".join(words) + ")")
    return " or ".join(terms)


def _batch_plan(cfg: TaskConfig, phase: str, plan: Plan) -> tuple[int, ...]:
    if phase in plan.sweep_phases:
        return tuple(dict.fromkeys((cfg.batch_size, *cfg.batch_sizes)))
    return (cfg.batch_size,)


def check_variants(selection: Selection, described: Mapping[str, Mapping[str, Any]]) -> None:
    if selection.variants is None:
        return
    known = sorted({v for d in described.values() for v in d.get("variants", ())})
    for variant in selection.variants:
        if known and variant not in known:
            raise MatrixError(f"unknown variant {variant!r}; choose from {', '.join(known)}")


def offers_precision(info: Mapping[str, Any], label: str, variant: str, device: str,
                     dtype: str, precision: str) -> bool:
    """Whether a described backend runs `precision` for this (config, variant, device,
    dtype). Strict fp32 always; reduced modes are float32 modes only, and only where
    the backend's description (`precision_support`: label -> variant -> device ->
    modes) lists them; a description without that table offers none."""
    if precision == STRICT_PRECISION:
        return True
    if dtype != "float32":
        return False
    table = info.get("precision_support", {}).get(label, {}).get(variant, {})
    return precision in table.get(device, ())


def not_applicable(selection: Selection, described: Mapping[str, Mapping[str, Any]]
                   ) -> list[tuple[str, str, str, str, str, str]]:
    """(config label, backend, variant, device, dtype, precision) combinations of the
    selection that are n/a: the backend does not offer that precision there."""
    out = []
    for task_name in selection.tasks:
        for cfg in task_configs(task_name, selection.preset, selection.overrides):
            for backend in selection.backends:
                info = described.get(backend, {})
                if not info.get("installed"):
                    continue
                devices = [d for d in selection.devices if d in info.get("devices", ("cpu",))]
                for variant in info.get("supports", {}).get(cfg.label, []):
                    for device, dtype, prec in itertools.product(
                            devices, selection.dtypes, selection.precisions):
                        if not offers_precision(info, cfg.label, variant, device, dtype, prec):
                            out.append((cfg.label, backend, variant, device, dtype, prec))
    return out


#: the variant of the error cells of a backend that cannot run (not installed, failed
#: import): it could not say which variants it has, so each (config, device, dtype,
#: phase, batch size) gets one error cell under this name instead of one per variant
NO_VARIANT = "-"


class _Program(NamedTuple):
    """What one program is built for; its cells are its phases at their batch sizes."""

    config: TaskConfig
    variant: str
    device: str
    dtype: str
    precision: str


def build_groups(selection: Selection, described: Mapping[str, Mapping[str, Any]]) -> list[Group]:
    """Groups in run order: for each task, each backend; calibration goes with a backend's
    first group. `described[backend]` holds `installed`, `error`, `variants`, `devices`,
    `supports` (config label -> supported variants) and `precision_support`, as the
    worker reports them. Precision modes a backend does not offer make no cell (n/a);
    a backend that cannot run gets a group of error cells (`_error_programs`)."""
    check_variants(selection, described)
    plan = PLANS[selection.preset]
    match = keyword_matcher(selection.keyword)
    phases = [p for p in PHASES if p in selection.phases]
    configs = {t: task_configs(t, selection.preset, selection.overrides)
               for t in selection.tasks}
    calibrated: set[str] = set()
    groups = []
    for task_name, backend in itertools.product(selection.tasks, selection.backends):
        info = described.get(backend, {})
        error = "" if info.get("installed") else str(info.get("error") or "not installed")
        programs = (_error_programs(selection, info, configs[task_name]) if error else
                    _programs(selection, info, configs[task_name], task_name, plan))
        cells = [cell for program in programs for cell in _cells(program, backend, phases, plan)
                 if match(cell.id)]
        if not cells:
            continue
        declared = list(info.get("variants", ()))
        cells.sort(key=lambda c: _run_order(c, configs[task_name], declared))
        calib: tuple[str, ...] = ()
        if backend not in calibrated and not error:
            calib = tuple(dict.fromkeys(c.device for c in cells))
            calibrated.add(backend)
        groups.append(Group(backend, task_name, tuple(cells), calib, error))
    return groups


def _devices(selection: Selection, info: Mapping[str, Any]) -> list[str]:
    """The selected devices the backend has; if none, the first selected device (its
    cells then record why they cannot run there)."""
    have = info.get("devices", ("cpu",))
    return [d for d in selection.devices if d in have] or list(selection.devices[:1])


def _programs(selection: Selection, info: Mapping[str, Any], configs: Sequence[TaskConfig],
              task_name: str, plan: Plan) -> Iterator[_Program]:
    """The programs a working backend builds: each wanted variant it supports for a
    config, on each device, dtype and precision mode it offers there."""
    devices = _devices(selection, info)
    for cfg in configs:
        variants = [v for v in info.get("supports", {}).get(cfg.label, [])
                    if _wanted(v, task_name, selection, plan)]
        for variant, device, dtype, precision in itertools.product(
                variants, devices, selection.dtypes, selection.precisions):
            if offers_precision(info, cfg.label, variant, device, dtype, precision):
                yield _Program(cfg, variant, device, dtype, precision)


def _error_programs(selection: Selection, info: Mapping[str, Any],
                    configs: Sequence[TaskConfig]) -> Iterator[_Program]:
    """A backend that cannot run: one error program per (config, variant, device,
    dtype) at strict precision only (a reduced mode would only repeat the error), its
    variants `NO_VARIANT` unless its description named some; none without strict."""
    if STRICT_PRECISION not in selection.precisions:
        return
    devices = _devices(selection, info)
    for cfg in configs:
        variants = info.get("supports", {}).get(cfg.label, [NO_VARIANT])
        for variant, device, dtype in itertools.product(variants, devices, selection.dtypes):
            yield _Program(cfg, variant, device, dtype, STRICT_PRECISION)


def _cells(program: _Program, backend: str, phases: Sequence[str], plan: Plan) -> list[Cell]:
    """A program's cells: each phase at each of its batch sizes (`_batch_plan`)."""
    cfg, variant, device, dtype, precision = program
    return [Cell(cfg, backend, variant, device, dtype, bs, phase, precision)
            for phase in phases for bs in _batch_plan(cfg, phase, plan)]


def _wanted(variant: str, task: str, selection: Selection, plan: Plan) -> bool:
    if selection.variants is not None:
        return variant in selection.variants
    return (variant, task) not in plan.skip and (variant, "*") not in plan.skip


def _run_order(cell: Cell, cfg_order: Sequence[TaskConfig], variants: list[str]) -> tuple:
    """Build each program once: all cells of one (config, variant, device, dtype, precision)
    together, first_call first (it needs a fresh program), main batch size before the sweep.
    Variants run in the backend's declared order, so eager ones are timed before any
    compiler has left worker processes or caches behind; strict precision first."""
    main = cell.batch_size == cell.config.batch_size
    rank = variants.index(cell.variant) if cell.variant in variants else len(variants)
    reduced = cell.precision != STRICT_PRECISION
    return (cfg_order.index(cell.config), rank, cell.variant, cell.device, cell.dtype,
            reduced, cell.precision, cell.phase != "first_call", not main, cell.batch_size,
            PHASES.index(cell.phase))


def round_plan(plan: Plan) -> Plan:
    """What one of `plan.rounds` worker processes times: its share of the budget and of
    the sample counts, so the rounds together take about what one process took."""
    k = max(1, plan.rounds)
    if k == 1:
        return plan
    return replace(plan, budget_s=plan.budget_s / k, min_rounds=max(1, -(-plan.min_rounds // k)),
                   max_rounds=max(1, -(-plan.max_rounds // k)))


def round_order(cells: Sequence[Cell], seed: int, group: str, round_index: int) -> list[Cell]:
    """The order one round times a group's cells in: seeded by (seed, group, round), so
    it is random from round to round yet reproducible. The programs' blocks (config,
    variant, device, dtype, precision: one program each) are shuffled, and inside a
    block its steady-state cells are; a block's `first_call` stays its first cell
    (it needs a fresh program), and no program is built twice in a round."""
    import random

    rng = random.Random(f"nnparity-order:{seed}:{group}:{round_index}")
    blocks: dict[tuple, list[Cell]] = {}
    for cell in cells:
        key = (cell.config, cell.variant, cell.device, cell.dtype, cell.precision)
        blocks.setdefault(key, []).append(cell)
    keys = list(blocks)
    rng.shuffle(keys)
    out: list[Cell] = []
    for key in keys:
        first = [c for c in blocks[key] if c.phase == "first_call"]
        rest = [c for c in blocks[key] if c.phase != "first_call"]
        rng.shuffle(rest)
        out += first + rest
    return out


def group_to_dict(group: Group) -> dict[str, Any]:
    """A JSON-ready form of a group, for handing it to the worker process."""
    return asdict(group)


def group_from_dict(data: Mapping[str, Any]) -> Group:
    def config(c: Mapping[str, Any]) -> TaskConfig:
        return TaskConfig(c["task"], tuple(map(tuple, c["knobs"])),
                          tuple(map(tuple, c["overrides"])), c["batch_size"],
                          tuple(c["batch_sizes"]), c.get("preset", ""))

    cells = tuple(
        Cell(config(c["config"]), c["backend"], c["variant"], c["device"], c["dtype"],
             c["batch_size"], c["phase"], c.get("precision", STRICT_PRECISION),
             c.get("setting", ""), tuple(tuple(kv) for kv in c.get("options") or ()))
        for c in data["cells"]
    )
    proc = data.get("process")
    process = ProcessSetting(
        proc["name"], tuple(tuple(kv) for kv in proc.get("env") or ()),
        tuple(proc.get("xla_flags") or ()), tuple(proc.get("unset") or ()),
        str(proc.get("threads") or "")) if proc else None
    return Group(data["backend"], data["task"], cells, tuple(data["calibrate_devices"]),
                 data.get("error", ""), data.get("part", ""), process)


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    """The inverse of `asdict(plan)` after a JSON round trip (lists back to tuples)."""
    values = dict(data)
    values["skip"] = tuple(tuple(pair) for pair in values.get("skip", ()))
    for key in ("sweep_phases", "gemm_sizes"):
        values[key] = tuple(values.get(key, ()))
    if isinstance(values.get("sweep_knobs"), list):
        values["sweep_knobs"] = tuple(values["sweep_knobs"])
    return Plan(**values)
