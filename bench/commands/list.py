"""The `nnparity list` command: tasks with their knobs and presets, backends, variants, devices
and the precision modes each backend offers per device (present or not).

A backend whose framework is missing is listed as "not installed"; one that
fails to import is listed with its error. Frameworks are imported only to ask
for variants and devices, after everything cheap has been printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import impls
from bench.timing.environment import installed_version
from impls.base import DEVICES
from tasks import PRESETS, TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-devices", action="store_true",
                        help="do not import frameworks to probe variants and devices")


def main(args: argparse.Namespace) -> int:
    print("Tasks")
    for task in TASKS.values():
        cfg = task.config("quick")
        print(f"  {task.name:<20} {task.summary}")
        knobs = ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg))
        print(f"  {'':<20} knobs (quick): {knobs}")
        if task.sweep:
            sweep = "; ".join(f"{k} in {', '.join(v)}" for k, v in task.sweep.items())
            print(f"  {'':<20} bench sweeps: {sweep}")
    print("\nPresets")
    for preset in PRESETS:
        sizes = []
        for task in TASKS.values():
            cfg = task.config(preset)
            spec = task.model(cfg)
            n_params = sum(int(math.prod(s)) for s in spec.param_shapes().values())
            sizes.append(f"{task.name} batch {cfg.batch_size}, {n_params:,} params")
        print(f"  {preset:<9} " + " | ".join(sizes))
    print("\nBackends")
    for name, framework in impls.BACKENDS.items():
        if not impls.is_installed(name):
            print(f"  {name:<11} not installed (pip install 'nnparity[{name}]')")
            continue
        line = f"  {name:<11} {framework} {installed_version(framework) or '?'}"
        if not args.no_devices:
            try:
                backend = impls.load(name)
                line += (f"  variants: {', '.join(backend.variants)}"
                         f"  devices: {', '.join(backend.devices())}")
                modes = "; ".join(f"{d} {', '.join(backend.precisions(d))}"
                                  for d in DEVICES)
                line += f"  precisions: {modes}"
            except Exception as exc:  # a broken install is reported, not raised
                line += f"  (import failed: {type(exc).__name__}: {exc})"
        print(line)
    return 0
