"""The merged report: one REPORT.md over runs measured on several machines.

`nnparity report RUN_DIR [RUN_DIR ...]` comes here when the runs span more than
one machine (several directories, or one Ray run whose groups ran on different
machines); a one-machine run keeps the single-run report of
`bench.report.markdown` unchanged. Machine is a dimension of every table:
each machine is named (CPU model and cores, GPU) and labelled M1, M2, ...; per
task, each backend's median time on each machine with each machine's ratio to
M1 (95% interval, "~" within noise); per machine, the one-machine report's
verdicts (the ranked summary with ties, the variant gaps with their causes),
from `bench.report.markdown`'s own functions, and the unstable cells counted in
the headline; throughput by machine; each
machine's own GEMM calibration (% of peak is computed per machine, against
that machine's calibration); errors with their machine. Runs of different
commits and overlapping cells are refused by `bench.results.machines.load_machines`.

It never runs or times anything, and never imports a framework.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from bench.options import OutputError
from bench.report.markdown import (
    RULE_TEXT,
    _ms,
    _num,
    dirty_warning,
    gaps_headline,
    gaps_table,
    headline,
    markdown_table,
    ratio_text,
    summary_table,
    tidy,
)
from bench.results.escape import md_text
from bench.results.machines import load_machines, split_machines
from bench.results.paths import RUNS
from bench.results.read import main_batch
from bench.results.schema import CALIBRATION, STEADY_PHASES
from bench.results.stats import ratio_interval
from bench.results.write import write_text_atomic


def tidy_machines(df: pd.DataFrame) -> pd.DataFrame:
    """`markdown.tidy` per machine (so % of peak and speed-ups stay within a machine),
    with `machine` (fingerprint) and `label` (M1, M2, ...) columns."""
    labels = {fp: f"M{i + 1}" for i, fp in enumerate(df.attrs["machines"])}
    parts = []
    for fp, part in split_machines(df).items():
        part = part.copy()
        part.attrs = {}
        parts.append(tidy(part).assign(machine=fp, label=labels[fp]))
    out = pd.concat(parts, ignore_index=True)
    out.attrs = dict(df.attrs, labels=labels)
    return out


def machines_table(df: pd.DataFrame) -> str:
    rows = []
    for fp, m in df.attrs["machines"].items():
        mine = df[df["machine"] == fp]
        nodes = ", ".join(df.attrs.get("ray_nodes", {}).get(fp, [])) or "-"
        rows.append([df.attrs["labels"][fp], m.name, fp, _num(m.threads, "d"),
                     f"{int((mine['status'] == 'ok').sum())} / {len(mine)}", nodes])
    return markdown_table(["machine", "CPU (cores), GPU", "fingerprint", "threads",
                           "cells ok", "Ray nodes"], rows)


def _labels(df: pd.DataFrame) -> list[str]:
    return list(df.attrs["labels"].values())


def calibration_by_machine(df: pd.DataFrame) -> str:
    cal = df[(df["phase"] == CALIBRATION) & (df["status"] == "ok")]
    if cal.empty:
        return "_No calibration cells in these runs._"
    pivot = cal.pivot_table(index=["backend", "device"], columns="label", values="gflops",
                            aggfunc="first")
    labels = [c for c in _labels(df) if c in pivot.columns]
    rows = [[b, d, *[_num(pivot.loc[(b, d), c], ".1f") for c in labels]]
            for b, d in pivot.index]
    return markdown_table(["backend", "device", *[f"{c} GFLOP/s" for c in labels]], rows)


def timing_by_machine(df: pd.DataFrame) -> list[str]:
    """Per task config: each (phase, backend/variant, device, dtype) row, one median
    column per machine, at the config's main batch size."""
    out = []
    ok = df[df["phase"].isin(STEADY_PHASES)]
    labels = _labels(df)
    for config, part in ok.groupby("config", sort=False):
        bs = main_batch(part)
        main = part[part["batch_size"] == bs]
        keys = main[["phase", "impl", "device", "dtype"]].drop_duplicates()
        keys = keys.sort_values(["phase", "impl"], key=lambda c: c.map(
            {p: i for i, p in enumerate(STEADY_PHASES)}) if c.name == "phase" else c)
        rows = []
        for k in keys.itertuples():
            here = main[(main["phase"] == k.phase) & (main["impl"] == k.impl)
                        & (main["device"] == k.device) & (main["dtype"] == k.dtype)]
            by = {r.label: r for r in here.itertuples()}
            rows.append([k.phase, f"{k.impl} ({k.device}, {k.dtype})",
                         *[_cell_ms(by.get(c)) for c in labels],
                         *[_vs(by.get(labels[0]), by.get(c)) for c in labels[1:]]])
        out.append(f"### {md_text(config)} (batch {int(bs)}): median ms per machine\n\n"
                   + markdown_table(["phase", "backend/variant", *labels,
                                     *[f"{c} vs {labels[0]}" for c in labels[1:]]], rows))
    return out


def _vs(base, other) -> str:
    """How much faster `other`'s machine ran the cell than `base`'s: the ratio of medians
    with its 95% interval and the "~" rule (markdown.ratio_text)."""
    if base is None or other is None or base.status != "ok" or other.status != "ok":
        return "-"
    if base.interval is None or other.interval is None:
        return ratio_text(base.median / other.median, float("nan"), float("nan"))
    return ratio_text(*ratio_interval(base.interval, other.interval))


def verdicts_by_machine(df: pd.DataFrame) -> list[str]:
    """The one-machine report's verdicts, machine by machine (its own functions): the
    ranked summary with ties, and the variant gaps with their causes."""
    out = []
    for fp, label in df.attrs["labels"].items():
        part = df[df["machine"] == fp]
        name = md_text(df.attrs["machines"][fp].name)
        out += [f"### {label}: {name}", "Frameworks ranked per task and phase (each "
                "framework's fastest variant; \"=\" a tie within noise, the fastest in bold):",
                summary_table(part), "Variant gaps within a framework:", gaps_table(part)]
    return out


def _gap_lines(df: pd.DataFrame) -> list[str]:
    """`markdown.gaps_headline` of each machine, named."""
    return [f"{label}: {line}" for fp, label in df.attrs["labels"].items()
            for line in gaps_headline(df[df["machine"] == fp])]


def _cell_ms(r) -> str:
    if r is None:
        return "-"
    return _ms(r.median) if r.status == "ok" else "error"


def throughput_by_machine(df: pd.DataFrame) -> str:
    step = df[(df["phase"] == "step") & (df["status"] == "ok")]
    if step.empty:
        return "_No step cells timed ok._"
    pivot = step.pivot_table(index=["config", "impl", "device", "batch_size"], columns="label",
                             values="samples_per_s", aggfunc="first")
    labels = [c for c in _labels(df) if c in pivot.columns]
    rows = [[c, f"{i} ({d})", str(int(b)), *[_num(pivot.loc[(c, i, d, b), m], ",.0f")
                                              for m in labels]]
            for c, i, d, b in pivot.index]
    return markdown_table(["config", "backend/variant", "batch",
                           *[f"{m} samples/s" for m in labels]], rows)


def errors_by_machine(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return "_No errors._"
    rows = [[r.label, r.cell, r.error[:160]] for r in bad.itertuples()]
    return markdown_table(["machine", "cell", "error"], rows)


def render(df: pd.DataFrame, figures: list[str]) -> str:
    runs = df.attrs["runs"]
    commit = md_text(", ".join(sorted(set(runs.values()))))
    commits = pd.DataFrame()  # dirty_warning reads the commits from attrs
    commits.attrs = {"commits": sorted({c.strip() for v in runs.values() for c in v.split(",")})}
    parts = [
        "# nnparity benchmark report: several machines",
        headline(df) + f" {len(df.attrs['machines'])} machines; commit {commit}. Merged "
        "from: " + ", ".join(f"`{p}`" for p in runs) + ". Times are medians of "
        "the timed rounds; every machine ran its groups one at a time with all its cores, "
        "and % of peak is against that machine's own GEMM calibration.",
        *dirty_warning(commits),
        *_gap_lines(df),
        "## Machines",
        machines_table(df),
        "## Verdicts by machine",
        "Each machine's own verdicts, as its one-machine report states them. " + RULE_TEXT,
        *verdicts_by_machine(df),
        "## Calibration by machine: measured float32 GEMM peak",
        calibration_by_machine(df),
        "## Timings by task and machine",
        *timing_by_machine(df),
        "## Throughput by machine (step, samples/s)",
        throughput_by_machine(df),
        "## Errors",
        errors_by_machine(df),
        "## Figures",
        *[f"![{Path(f).stem}]({Path(f).name})" for f in figures],
    ]
    return "\n\n".join(parts) + "\n"


def write_merged_report(paths: list[str | Path], out: str | Path | None = None,
                        plots: bool = True) -> Path:
    """REPORT.md (and figures) for runs over several machines; returns the report's path.
    Default directory: the run itself for one run, else results/runs/merged-<time>."""
    df = tidy_machines(load_machines(paths))
    target = Path(out) if out else (Path(paths[0]) if len(paths) == 1
                                    else RUNS / time.strftime("merged-%Y%m%d-%H%M%S"))
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # --out names a file, or a path under one
        raise OutputError(f"--out {target}: cannot create ({exc.strerror or exc})") from None
    figures: list[str] = []
    if plots:
        from bench.report.machine_plots import draw_machines

        figures = draw_machines(df, target)
    report = target / "REPORT.md"
    write_text_atomic(report, render(df, figures))
    return report
