"""A tuned run: the main matrix with one speed setting per framework (`run --settings`).

`nnparity settings` finds each framework's best safe setting (the fastest that agrees
with the reference, beyond noise); `nnparity run --settings best` re-runs the main
matrix with it, and `--settings torch:channels_last,jax:default` names them. The
settings are `impls.settings` declarations, applied as the sweep applies them:

- a program setting (build options: channels_last, lax.scan unroll, a layout) goes
  to every cell it applies to (`Setting.applies`: its tasks, phases, devices and the
  backend's default variant); the cell keeps its id and records the setting, so a
  tuned run compares cell by cell with a default one;
- a process setting (threads, environment variables, XLA flags) is a property of the
  worker process: it applies to every cell of the backend's groups (all variants),
  which all record it;
- a setting that builds another variant (`torch.compile`, `jit_compile`) adds nothing:
  the matrix already times that variant beside the default one; a precision mode is
  `--precisions`' axis. Both are refused as bad input, as are unknown names.

This module imports no framework; `bench.commands.run` resolves "best" from a sweep's
results and hands the chosen settings here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from bench.options import InputError
from bench.timing.matrix import Group, ProcessSetting
from impls.settings import DEFAULT_VARIANTS, Setting, find, settings_for

#: the name of "no setting" (a framework's defaults)
DEFAULT = "default"


def parse_named(text: str, backends: Sequence[str]) -> dict[str, Setting | None]:
    """`backend:name,...` -> backend -> its setting (None: `default`). InputError on an
    unknown backend or setting, a backend named twice, or a setting refused here."""
    chosen: dict[str, Setting | None] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        backend, sep, name = part.partition(":")
        if not sep or not backend or not name:
            raise InputError(f"--settings {part!r}: expected BACKEND:SETTING (e.g. "
                             "torch:channels_last), or 'best'")
        if backend not in DEFAULT_VARIANTS:
            raise InputError(f"--settings {part!r}: unknown backend {backend!r} (known: "
                             f"{', '.join(sorted(DEFAULT_VARIANTS))})")
        if backend in chosen:
            raise InputError(f"--settings: {backend} is named twice")
        if name == DEFAULT:
            chosen[backend] = None
            continue
        setting = find(backend, name)
        if setting is None:
            known = ", ".join(s.name for s in settings_for(backend))
            raise InputError(f"--settings {part!r}: {backend} declares no setting {name!r} "
                             f"(known: {known})")
        chosen[backend] = check_usable(setting)
    if not chosen:
        raise InputError("--settings: name at least one BACKEND:SETTING, or 'best'")
    left_out = sorted(b for b in chosen if backends and b not in backends)
    if left_out:
        raise InputError(f"--settings names {', '.join(left_out)}, which the selection's "
                         f"--backends ({', '.join(backends)}) leaves out")
    return chosen


def usable(setting: Setting) -> str:
    """"" when a tuned run can apply `setting`, else why not (`check_usable`'s reasons)."""
    try:
        check_usable(setting)
    except InputError as why:
        return str(why)
    return ""


def check_usable(setting: Setting) -> Setting:
    """The setting, or InputError when a tuned run cannot apply it."""
    if setting.variant:
        raise InputError(f"--settings {setting.key}: it builds the {setting.variant!r} "
                         "variant, which the matrix already times beside the default one "
                         f"(select it with --variants {setting.variant})")
    if setting.precision != "fp32":
        raise InputError(f"--settings {setting.key}: a precision mode; run it with "
                         f"--precisions fp32,{setting.precision}")
    if setting.unavailable:
        raise InputError(f"--settings {setting.key}: n/a here ({setting.unavailable})")
    return setting


def tuned_only(chosen: Mapping[str, Setting | None]) -> dict[str, Setting]:
    """The backends that run with a setting (those at their defaults left out)."""
    return {b: s for b, s in chosen.items() if s is not None}


def label(chosen: Mapping[str, Setting | None], source: str) -> tuple[tuple[str, str], ...]:
    """The run's record of its settings (`nnparity_run.settings`): the frameworks that
    run with one (the rest ran their defaults), and where they came from."""
    return (*sorted((b, s.name) for b, s in tuned_only(chosen).items()), ("source", source))


def tune_groups(groups: Sequence[Group], chosen: Mapping[str, Setting | None]
                ) -> tuple[list[Group], list[str]]:
    """The groups with each backend's setting applied, and one line per backend saying
    how many cells took it (or why none did)."""
    out, took, why_not = [], {}, {}
    for group in groups:
        setting = chosen.get(group.backend)
        if setting is None or group.error:
            out.append(group)
            continue
        tuned, n, why = _tune(group, setting)
        out.append(tuned)
        took[group.backend] = took.get(group.backend, 0) + n
        if why:
            why_not.setdefault(group.backend, why)
    notes = []
    for backend in sorted(chosen):
        setting = chosen[backend]
        if setting is None:
            notes.append(f"{backend}: defaults")
        elif took.get(backend):
            notes.append(f"{backend}: {setting.name} on {took[backend]} cell(s)"
                         + (" (process-wide: every variant)" if setting.scope == "process"
                            else ""))
        else:
            notes.append(f"{backend}: {setting.name} applies to no selected cell"
                         + (f" ({why_not[backend]})" if backend in why_not else ""))
    return out, notes


def _tune(group: Group, setting: Setting) -> tuple[Group, int, str]:
    if setting.scope == "process":
        # a process setting reaches every cell of the process: asked of the default
        # variant on each device the group runs, only its availability matters
        reasons = [setting.applies(group.task, DEFAULT_VARIANTS[group.backend],
                                   (setting.phases or ("step",))[0], device)
                   for device in sorted({c.device for c in group.cells})]
        if reasons and all(reasons):
            return group, 0, reasons[0]
        process = ProcessSetting(setting.name, tuple(setting.env), tuple(setting.xla_flags),
                                 tuple(setting.unset), setting.threads)
        cells = tuple(replace(c, setting=setting.name) for c in group.cells)
        return replace(group, cells=cells, process=process), len(cells), ""
    cells, n, why = [], 0, ""
    for cell in group.cells:
        reason = setting.applies(cell.config.task, cell.variant, cell.phase, cell.device)
        if reason or cell.precision != "fp32":
            why = why or reason
            cells.append(cell)
            continue
        cells.append(replace(cell, setting=setting.name, options=tuple(setting.options)))
        n += 1
    return replace(group, cells=tuple(cells)), n, why
