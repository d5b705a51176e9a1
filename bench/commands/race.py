"""`nnparity race`: train every backend to the same held-out target, from the same start.

The command: its options, the plan they make, the run directory (locked), and the exit
code. The race itself is the library `bench.race` (run.py spawns the workers and keeps
the journal, report.py renders race.json, html.py its page); `--report DIR` only
renders again, and `--resume --out DIR` takes an interrupted race up again where it
stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import impls
from bench.options import InputError, add_list_option, backend_list, choice_list, positive_int
from bench.race import config
from bench.race.html import write_html
from bench.race.report import RAW, write_report
from bench.race.run import GROUP_TIMEOUT_S, race
from impls.base import PRECISIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default",
                        help="; ".join(f"{k}: {p.note}" for k, p in config.PRESETS.items()))
    add_list_option(parser, "tasks", f"comma list of {', '.join(config.RACE_TASKS)}")
    add_list_option(parser, "backends", "comma list (default: every installed backend)")
    parser.add_argument("--all-variants", action="store_true",
                        help="every variant of each backend, not only its default (as "
                             "--preset full)")
    add_list_option(parser, "dtypes", "comma list of float32, float64 (default: the preset's)")
    add_list_option(parser, "precisions",
                    f"comma list of {', '.join(PRECISIONS)} for float32 entries; modes a "
                    "backend does not offer on the CPU are left out (default: fp32)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds per entry (default: the preset's, 5)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="intra-op threads for every framework (default: all cores)")
    parser.add_argument("--out", default=None, help="run directory (default: a new one "
                                                    "under results/runs/)")
    parser.add_argument("--resume", action="store_true",
                        help=f"take up the interrupted race in --out (its partial {RAW}) "
                             "with the same options: finished runs are kept, the rest run")
    parser.add_argument("--timeout", type=positive_int, default=int(GROUP_TIMEOUT_S),
                        help="seconds one (backend, task) group may take")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help=f"only render REPORT.md, its figures and REPORT.html (with "
                             f"plotly) again from DIR/{RAW}")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    preset = config.preset(args.preset)
    tasks = choice_list(args.tasks, config.RACE_TASKS, "task")
    backends = backend_list(args.backends)
    missing = [b for b in backends if not impls.is_installed(b)]
    if args.backends and missing:
        raise InputError(f"backend {missing[0]!r} is not installed "
                         f"(pip install 'nnparity[{missing[0]}]')")
    backends = [b for b in backends if b not in missing]
    dtypes = choice_list(args.dtypes, impls.DTYPES, "dtype", preset.dtypes)
    precisions = choice_list(args.precisions, PRECISIONS, "precision", preset.precisions)
    return {"preset": args.preset, "tasks": tasks, "backends": backends,
            "variants": "all" if args.all_variants else preset.variants, "dtypes": dtypes,
            "precisions": precisions, "seeds": args.seeds or preset.seeds}


def _run_directory(out: str | None, resume: bool):
    from bench.timing.runner import RunDirectory

    if not resume:
        return RunDirectory(out)

    class Resumed(RunDirectory):
        """The interrupted race's own files are not an earlier run's."""

        def stale(self) -> list[str]:
            return [n for n in super().stale() if n not in (RAW, ".work/")]

    if not out or not (Path(out) / RAW).is_file():
        raise InputError(f"--resume needs --out naming an interrupted race's directory "
                         f"(with its {RAW})")
    return Resumed(out)


def main(args: argparse.Namespace) -> int:
    if args.report is not None:
        print(f"report: {write_report(Path(args.report))}")
        page = write_html(Path(args.report))
        if page is not None:
            print(f"page: {page}")
        return 0
    if args.out is not None and not args.out.strip():
        raise InputError("--out '': an empty path (leave --out out for the default)")
    plan = _plan(args)
    if not plan["backends"]:
        raise InputError("no selected backend is installed")
    run_dir = _run_directory(args.out, getattr(args, "resume", False))
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    doc, report = race(plan, run_dir.path, args.threads, float(args.timeout),
                       resume=getattr(args, "resume", False), say=say)
    print(f"report: {report}  ({doc['machine']['seconds']:.0f}s)")
    # a worker or a run that raised is an error (exit 1); an entry that misses its
    # target is a result, marked failed in the report
    errors = [g for g in doc["groups"] if g.get("error")] + [r for r in doc["runs"]
                                                             if r.get("error")]
    if errors:
        print(f"{len(errors)} group(s) or run(s) errored; see the report", file=sys.stderr)
    return 1 if errors else 0
