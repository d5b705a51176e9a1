"""Which (cell, setting) pairs a settings sweep times, in which worker processes and order.

A sweep cell is a cell of the matrix (task + knobs, backend, variant, device, float32,
the preset's main batch size, phase); each is timed with its default ("default") and
with every setting of its backend that applies (`impls.settings.Setting.applies`),
each toggled alone. An item's id is the cell id, "@", the setting's name.

Program settings run in the backend's default process beside the default; each
process setting gets processes of its own (its environment is read at import).
Process settings that resolve to the default's environment on this machine (threads
"half" of two cores is one thread; "all" is the default) are n/a, "same as ...".
Every process is one round; a round starts every (backend, environment) process once,
in a seeded random order, and each process times its items in its own seeded random
order, the phases of one (configuration, setting) next to each other (one program
serves them all); both orders are recorded (`round_orders`). This module imports no framework
and times nothing.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.timing.matrix import PLANS, Cell, TaskConfig, keyword_matcher, task_configs
from impls.settings import DEFAULT_VARIANTS, Setting, resolve_threads, settings_for
from tasks.spec import SpecError

DEFAULT = "default"
#: the sweep's cells when none are named: one MLP, the CNN and the LSTM (issue 24)
DEFAULT_TASKS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("mlp_regression", ()),
    ("cnn_classification", ()),
    ("rnn_sequence", (("cell", "lstm"),)),
)
DEFAULT_PHASES = ("forward", "step")


class SettingsError(SpecError):
    """A bad selection of settings (unknown name, nothing selected): exit code 2."""


@dataclass(frozen=True)
class Item:
    cell: Cell
    setting: str  # DEFAULT or a Setting name

    @property
    def id(self) -> str:
        return f"{self.cell.id}@{self.setting}"


@dataclass(frozen=True)
class Environment:
    """One kind of worker process: the default, or one process setting's."""

    backend: str
    name: str  # DEFAULT or the process setting's name
    threads: int
    env: tuple[tuple[str, str], ...] = ()
    xla_flags: tuple[str, ...] = ()
    unset: tuple[str, ...] = ()  # environment variables removed before it starts

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.name}"


@dataclass(frozen=True)
class NotApplicable:
    cell_id: str
    backend: str
    setting: str
    why: str


@dataclass
class SweepPlan:
    preset: str
    cells: list[Cell]
    items: dict[str, list[Item]]  # environment key -> its items
    environments: dict[str, Environment]
    not_applicable: list[NotApplicable] = field(default_factory=list)
    settings: dict[str, Setting] = field(default_factory=dict)  # "backend:name" -> declaration

    def item_count(self) -> int:
        return sum(len(v) for v in self.items.values())


def sweep_configs(preset: str, tasks: Sequence[str] | None,
                  overrides: dict[str, str]) -> list[TaskConfig]:
    """The default sweep's three configurations, or each named task's default one."""
    wanted = [(t, dict(o)) for t, o in DEFAULT_TASKS] if not tasks else \
        [(t, {}) for t in tasks]
    configs = []
    for task, own in wanted:
        configs += task_configs(task, preset, {**own, **overrides}, sweep=False)
    return configs


def process_environment(setting: Setting | None, backend: str, threads: int,
                        cores: int | None = None) -> Environment:
    """The environment a process runs in: the default's (`setting` None) or a setting's."""
    if setting is None or setting.scope != "process":
        return Environment(backend, DEFAULT, threads)
    n = resolve_threads(setting.threads, cores) if setting.threads else threads
    return Environment(backend, setting.name, n, tuple(setting.env), tuple(setting.xla_flags),
                       tuple(setting.unset))


def _skipped(setting: Setting, task: str, preset: str) -> str:
    """Why the sweep leaves a setting out by default here, or "": it builds a variant the
    preset's plan leaves out for this task (slow compiles: torch.compile on a 50-step
    recurrence takes minutes per process), or it is declared slow beyond tiny."""
    if setting.by_name_only:
        return f"asked by name only ({setting.by_name_only}; --settings {setting.name})"
    if setting.slow and preset != "tiny":
        return f"left out beyond tiny ({setting.slow}; ask with --settings {setting.name})"
    if setting.variant and any(v == setting.variant and t in ("*", task)
                               for v, t in PLANS[preset].skip):
        return f"left out at {preset} (slow compile; ask with --settings {setting.name})"
    return ""


def build_plan(preset: str, configs: Sequence[TaskConfig], backends: Sequence[str],
               devices: Sequence[str], phases: Sequence[str], *, threads: int,
               variants: Sequence[str] | None = None, names: Sequence[str] | None = None,
               keyword: str | None = None, cores: int | None = None) -> SweepPlan:
    """Every (cell, setting) pair of the selection, grouped by process environment.

    `names`: only these settings (any backend's); a named setting is timed even where
    the preset's plan would leave its variant out. `keyword`: pytest's -k over item ids;
    a cell with any setting selected keeps its default (the baseline)."""
    if names:
        declared = {s.name for b in backends for s in settings_for(b)}
        unknown = sorted(set(names) - declared - {DEFAULT})
        if unknown:
            raise SettingsError(f"unknown setting {', '.join(unknown)}; choose from "
                                f"{', '.join(sorted(declared))}")
    match = keyword_matcher(keyword)
    plan = SweepPlan(preset, [], {}, {})
    for backend in backends:
        default_env = process_environment(None, backend, threads)
        seen: dict[tuple, str] = {(default_env.threads, (), (), ()): DEFAULT}
        chosen = [s for s in settings_for(backend) if not names or s.name in names]
        for s in chosen:
            plan.settings[s.key] = s
        for cfg in configs:
            for variant in (variants or (DEFAULT_VARIANTS[backend],)):
                for device in devices:
                    for phase in phases:
                        cell = Cell(cfg, backend, variant, device, "float32", cfg.batch_size,
                                    phase)
                        items = []
                        for s in chosen:
                            why = s.applies(cfg.task, variant, phase, device)
                            if not why and not names:
                                why = _skipped(s, cfg.task, preset)
                            env = process_environment(s, backend, threads, cores)
                            ident = (env.threads, env.env, env.xla_flags, env.unset)
                            if not why and s.scope == "process" and seen.get(ident, s.name) \
                                    != s.name:
                                why = f"same as {seen[ident]} on {cores or os.cpu_count()} cores"
                            if why:
                                plan.not_applicable.append(NotApplicable(cell.id, backend,
                                                                         s.name, why))
                                continue
                            seen.setdefault(ident, s.name)
                            item = Item(cell, s.name)
                            if match(item.id):
                                items.append((env, item))
                        base = Item(cell, DEFAULT)
                        if not items and not match(base.id):
                            continue
                        plan.cells.append(cell)
                        for env, item in [(default_env, base), *items]:
                            plan.environments[env.key] = env
                            plan.items.setdefault(env.key, []).append(item)
    if not plan.cells:
        raise SettingsError("the selection holds no cell (check -k, --tasks, --backends)")
    return plan


def round_orders(plan: SweepPlan, seed: int, round_index: int) -> tuple[list[str],
                                                                         dict[str, list[str]]]:
    """(the environments' order in this round, each environment's item ids in order):
    seeded by (seed, round), so a rerun repeats them; recorded with the results."""
    rng = random.Random(f"{seed}:{round_index}")
    envs = sorted(plan.items)
    rng.shuffle(envs)
    orders = {}
    for key in envs:
        # the phases of one (configuration, setting) stay together, in a random order, so
        # the worker builds (and compiles) that program once for all of them
        units: dict[tuple[str, str], list[str]] = {}
        for item in plan.items[key]:
            units.setdefault((item.cell.config.label, item.setting), []).append(item.id)
        groups = list(units.values())
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)
        orders[key] = [iid for group in groups for iid in group]
    return envs, orders


def item_spec(item: Item, setting: Setting | None) -> dict[str, Any]:
    """What the worker needs to build and time one item (JSON)."""
    cell = item.cell
    return {
        "id": item.id,
        "setting": item.setting,
        "task": cell.config.task,
        "overrides": [list(kv) for kv in cell.config.overrides],
        "variant": (setting.variant if setting and setting.variant else cell.variant),
        "device": cell.device,
        "dtype": cell.dtype,
        "batch_size": cell.batch_size,
        "phase": cell.phase,
        "precision": setting.precision if setting else "fp32",
        "options": [list(kv) for kv in setting.options] if setting else [],
    }
