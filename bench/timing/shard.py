"""`nnparity run --shard K/N`: a deterministic share of the matrix's groups.

A CI matrix of N jobs, each running `--shard K/N` (K = 1..N), covers the whole
matrix once. The partition depends only on the selection (tasks x backends),
never on what a machine happens to have installed or on timing: every
(backend, task) pair the selection could produce is ordered by a stable hash of
its group name (sha1, not Python's salted `hash`) and dealt round-robin, so the
shards hold equal numbers of groups (within one) and each holds a mix of
backends and tasks. A pair that builds no group (filtered out by -k) leaves a
hole in its shard; no group ever moves to another shard.

Calibration is a measurement of the machine, not a matrix cell: each shard
calibrates every backend it runs (with that backend's first group in the
shard), so each machine's report can show % of peak. The timed cells of all
shards are exactly the full matrix's, with no overlap; calibration cells repeat
per shard, and `nnparity report` pools repeats on the same machine.

This module only filters groups; it runs, times and imports nothing heavy.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from bench.options import InputError
from bench.timing.matrix import Group, Selection


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """"K/N" -> (K, N) with 1 <= K <= N; None for no sharding; InputError otherwise."""
    if text is None:
        return None
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return index, count


def group_name(backend: str, task: str) -> str:
    """The name `matrix.Group` gives a (backend, task) group."""
    return f"{backend}_{task}"


def _stable_key(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def shard_of(sel: Selection, count: int) -> dict[str, int]:
    """Every group name the selection can produce -> its shard (1-based)."""
    names = sorted({group_name(b, t) for b in sel.backends for t in sel.tasks},
                   key=lambda n: (_stable_key(n), n))
    return {name: i % count + 1 for i, name in enumerate(names)}


def shard_groups(groups: list[Group], sel: Selection, index: int, count: int) -> list[Group]:
    """The groups of shard `index` of `count`, in run order, each backend calibrated
    in its first group of this shard (see the module docstring)."""
    owner = shard_of(sel, count)
    mine = [g for g in groups if owner.get(g.name) == index]
    calibrated: set[str] = set()
    out = []
    for group in mine:
        calib: tuple[str, ...] = ()
        if not group.error and group.backend not in calibrated:
            calib = tuple(dict.fromkeys(c.device for c in group.cells))
            calibrated.add(group.backend)
        out.append(replace(group, calibrate_devices=calib))
    return out
