"""The `nnparity report` command: REPORT.md and PNG figures from run directories.

One run from one machine: its tables (bench/report/markdown.py) and figures
(bench/report/plots.py) written into the run itself. Several runs, or one run
over several machines (a Ray run, CI shards): the merged report
(bench/report/machines.py). `--html`: one run's interactive REPORT.html
(bench/report/html.py). It never runs or times anything, and never imports a
framework.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.common import check_out_dir
from bench.options import InputError, OutputError
from bench.report.html import write_html
from bench.report.machines import write_merged_report
from bench.report.markdown import render, tidy
from bench.report.plots import draw_all
from bench.results.machines import fingerprints
from bench.results.read import load_run
from bench.results.write import write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="+",
                        help="a run directory written by `nnparity run`; several (e.g. one "
                             "per machine or CI shard) are merged into one report")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--out", default=None,
                        help="where the report goes (default: the run itself for one run, "
                             "else results/runs/merged-<time>)")
    parser.add_argument("--html", action="store_true",
                        help="write the interactive, self-contained REPORT.html of one run "
                             "instead (needs plotly: the `html` extra)")


def write_report(run_dir: str | Path, plots: bool = True,
                 out_dir: str | Path | None = None) -> Path:
    """One machine's run: REPORT.md (and its figures) in the run directory, or in
    `out_dir` (created) when given."""
    run = Path(run_dir)
    df = tidy(load_run(run))
    target = Path(out_dir) if out_dir else run
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # --out names a file, or a path under one
        raise OutputError(f"--out {target}: cannot create ({exc.strerror or exc})") from None
    figures = draw_all(df, target) if plots else []
    out = target / "REPORT.md"
    write_text_atomic(out, render(df, figures))
    return out


def main(args: argparse.Namespace) -> int:
    dirs = [args.run_dir] if isinstance(args.run_dir, str) else list(args.run_dir)
    for run in map(Path, dirs):
        if not run.is_dir():
            raise InputError(f"{run} is not a run directory")
    out_dir = getattr(args, "out", None)
    check_out_dir(out_dir)
    if getattr(args, "html", False):  # callers building a Namespace by hand may omit it
        if len(dirs) != 1:
            raise InputError("--html takes one run directory")
        print(write_html(Path(dirs[0])))
        return 0
    if len(dirs) == 1 and len(fingerprints(dirs[0])) == 1:  # one machine: its full report
        out = write_report(Path(dirs[0]), plots=not args.no_plots, out_dir=out_dir)
    else:  # several runs, or one run over several machines (e.g. a Ray run)
        out = write_merged_report(dirs, out_dir, plots=not args.no_plots)
    print(out)
    return 0
