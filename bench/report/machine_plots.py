"""Figures of the merged report: machine as a dimension, drawn with matplotlib (Agg).

From `bench.report.machines.tidy_machines`' table: per task, each backend's
step time on each machine (grouped bars, one colour per machine), and
throughput against batch size with one line per machine and backend. Every
axis names its unit. Reads no files, times nothing, imports no framework.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.plots import LINESTYLES, LineStyle, _plt, grouped_bars, throughput_grid
from bench.results.read import main_rows


def _colours(labels: list[str]) -> dict[str, str]:
    cmap = _plt().get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(labels)}


def _step_main(df: pd.DataFrame) -> pd.DataFrame:
    """Step cells timed ok at each config's main batch size (where every phase ran)."""
    ok = df[(df["status"] == "ok") & (df["phase"] != "calibration")
            & (df["phase"] != "first_call")]
    main = main_rows(ok)
    return main[main["phase"] == "step"]


def machine_bars(df: pd.DataFrame, task: str, out: Path) -> Path | None:
    rows = _step_main(df)
    rows = rows[rows["task"] == task]
    if rows.empty:
        return None
    labels = list(df.attrs["labels"].values())
    rows = rows.assign(where=rows["impl"] + " (" + rows["device"] + ")")
    return grouped_bars(
        rows, "where", "label", labels, _colours(labels), "median step time",
        lambda config, part: f"{config}, batch {int(part['batch_size'].iloc[0])}, step, "
                             "by machine", "machine", out, f"machines_{task}")


def machine_throughput(df: pd.DataFrame, out: Path) -> Path | None:
    step = df[(df["phase"] == "step") & (df["status"] == "ok")]
    configs = list(dict.fromkeys(step["config"]))
    colours = _colours(list(df.attrs["labels"].values()))
    impls = sorted(set(step["impl"]))

    def style(key: tuple) -> LineStyle:
        label, impl = key
        return LineStyle(colours.get(label), "o",
                            LINESTYLES[impls.index(impl) % len(LINESTYLES)])

    return throughput_grid(step, configs, ["label", "impl"], style,
                           lambda key: f"{key[0]} {key[1]}", "machine, backend/variant",
                           out, "machines_throughput")


def draw_machines(df: pd.DataFrame, out: Path) -> list[str]:
    """Every merged-report figure these runs support; returns the written paths."""
    made = [machine_bars(df, task, out) for task in dict.fromkeys(df["task"])
            if task and task != "gemm"]
    made.append(machine_throughput(df, out))
    return [str(p) for p in made if p is not None]
