"""Figures of the merged report: machine as a dimension, drawn with matplotlib (Agg).

From `bench.report.machines.tidy_machines`' table: per task, each backend's
step time on each machine (grouped bars, one colour per machine), and
throughput against batch size with one line per machine and backend. Every
axis names its unit. Reads no files, times nothing, imports no framework.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.plots import LINESTYLES, WIDE, _plain_log, _plt, _save
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
    plt = _plt()
    rows = _step_main(df)
    rows = rows[rows["task"] == task]
    if rows.empty:
        return None
    labels = list(df.attrs["labels"].values())
    colours = _colours(labels)
    configs = list(dict.fromkeys(rows["config"]))
    fig, axes = plt.subplots(len(configs), 1, figsize=(11, 3.6 * len(configs)), squeeze=False)
    for ax, config in zip(axes[:, 0], configs, strict=True):
        part = rows[rows["config"] == config]
        part = part.assign(where=part["impl"] + " (" + part["device"] + ")")
        wheres = sorted(dict.fromkeys(part["where"]))
        present = [m for m in labels if m in set(part["label"])]
        width = 0.8 / len(present)
        x = np.arange(len(wheres))
        for i, m in enumerate(present):
            sel = part[part["label"] == m].set_index("where").reindex(wheres)
            med = sel["median"].to_numpy() * 1e3
            err = np.vstack([med - sel["q1"].to_numpy() * 1e3, sel["q3"].to_numpy() * 1e3 - med])
            ax.bar(x + (i - (len(present) - 1) / 2) * width, med, width, yerr=np.abs(err),
                   capsize=2, label=m, color=colours[m])
        values = part["median"].to_numpy() * 1e3
        log = values.size and values.max() / max(values.min(), 1e-12) > WIDE
        if log:
            _plain_log(ax)
        ax.set_xticks(x, wheres, rotation=20, ha="right")
        ax.set_ylabel("median step time (ms" + (", log scale)" if log else ")"))
        ax.set_title(f"{config}, batch {int(part['batch_size'].iloc[0])}, step, by machine "
                     "(bars: median, whiskers: IQR)")
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(title="machine", fontsize=9)
    fig.tight_layout()
    return _save(fig, out, f"machines_{task}")


def machine_throughput(df: pd.DataFrame, out: Path) -> Path | None:
    plt = _plt()
    step = df[(df["phase"] == "step") & (df["status"] == "ok")]
    configs = list(dict.fromkeys(step["config"]))
    if not configs:
        return None
    colours = _colours(list(df.attrs["labels"].values()))
    cols = min(3, len(configs))
    nrows = math.ceil(len(configs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4 * nrows), squeeze=False)
    for ax, config in zip(axes.flat, configs, strict=False):
        part = step[step["config"] == config]
        impls = sorted(set(part["impl"]))
        for (m, impl), line in part.groupby(["label", "impl"]):
            line = line.sort_values("batch_size")
            ax.plot(line["batch_size"], line["samples_per_s"], marker="o",
                    linestyle=LINESTYLES[impls.index(impl) % len(LINESTYLES)],
                    color=colours.get(m), label=f"{m} {impl}")
        sizes = sorted(set(part["batch_size"]))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(b)) for b in sizes])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        _plain_log(ax)
        ax.set_xlabel("batch size (log scale)")
        ax.set_ylabel("training samples/s, step (log scale)")
        ax.set_title(config)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, title="machine, backend/variant")
    for ax in list(axes.flat)[len(configs):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, out, "machines_throughput")


def draw_machines(df: pd.DataFrame, out: Path) -> list[str]:
    """Every merged-report figure these runs support; returns the written paths."""
    made = [machine_bars(df, task, out) for task in dict.fromkeys(df["task"])
            if task and task != "gemm"]
    made.append(machine_throughput(df, out))
    return [str(p) for p in made if p is not None]
