"""Figures for REPORT.md, drawn with matplotlib (Agg) from the report's tidy table.

Each function takes the tidy DataFrame from `bench.report.markdown.tidy`, writes one PNG
and returns its path (or None when the run has nothing to draw): grouped bars
per task, throughput against batch size, the gradient-error heatmap, first
call against steady state, and precision modes' speed-up against error. Every
axis names its unit. This module reads no files, writes only inside the
directory it is given (file names sanitised), and times nothing; it must not
import a framework.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.markdown import abstraction_rows, precision_speedups
from bench.results.read import main_rows
from bench.results.schema import CALIBRATION
from bench.results.write import safe_name, write_atomic

PHASE_COLOURS = {"forward": "#4C72B0", "backward": "#DD8452", "step": "#55A868"}
BACKEND_COLOURS = {"numpy": "#555555", "torch": "#EE4C2C", "jax": "#2A6FDB",
                   "tensorflow": "#FF9F00"}
LINESTYLES = ("-", "--", ":", "-.")
#: markers and dashes for a framework's variants, in matching order: matplotlib's and
#: Plotly's names of the same shapes (circle, square, diamond, triangle, cross, star...)
MARKERS = ("o", "s", "D", "^", "X", "*", "v", "P")
PLOTLY_MARKERS = ("circle", "square", "diamond", "triangle-up", "x", "star",
                  "triangle-down", "cross")
PLOTLY_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


@dataclass(frozen=True)
class LineStyle:
    """How one line of a matplotlib chart looks."""

    colour: Any
    marker: str
    linestyle: str


@dataclass(frozen=True)
class VariantStyle:
    """How one (framework, variant) looks in every chart of a report."""

    colour: str  # a shade of the framework's hue (BACKEND_COLOURS)
    index: int  # its place among the framework's variants: picks marker and dash
    marker: str  # matplotlib
    linestyle: str  # matplotlib
    plotly_marker: str
    plotly_dash: str


def _shade(colour: str, k: int, n: int) -> str:
    """The k-th of n shades of `colour`: same hue, lightness from dark to light."""
    if n == 1:
        return colour
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    hue, light, sat = colorsys.rgb_to_hls(r, g, b)
    light = 0.22 + 0.5 * k / (n - 1)  # 0.22 (dark) .. 0.72 (light): all readable on white
    r, g, b = colorsys.hls_to_rgb(hue, light, sat)
    return "#" + "".join(f"{round(v * 255):02x}" for v in (r, g, b))


def run_styles(df: pd.DataFrame) -> dict[str, VariantStyle]:
    """`variant_styles` of every implementation a run timed (calibration left out)."""
    return variant_styles(df.loc[df["phase"] != CALIBRATION, "impl"].dropna())


def variant_styles(impls) -> dict[str, VariantStyle]:
    """A style per implementation ("backend/variant", "+mode" for a precision mode) of
    a whole run, so that a variant looks the same in every chart: its framework's hue
    in a shade of its own, and its own marker and dash among the framework's
    variants (sorted by name)."""
    by: dict[str, list[str]] = {}
    for impl in sorted(set(impls)):
        by.setdefault(impl.split("/")[0], []).append(impl)
    out = {}
    for backend, names in by.items():
        base = BACKEND_COLOURS.get(backend, "#7f7f7f")
        for k, impl in enumerate(names):
            out[impl] = VariantStyle(
                colour=_shade(base, k, len(names)), index=k,
                marker=MARKERS[k % len(MARKERS)], linestyle=LINESTYLES[k % len(LINESTYLES)],
                plotly_marker=PLOTLY_MARKERS[k % len(PLOTLY_MARKERS)],
                plotly_dash=PLOTLY_DASHES[k % len(PLOTLY_DASHES)])
    return out
WIDE = 20  # max/min above this: a log axis


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "figure.dpi": 110})
    return plt


def _plain_log(ax, axis: str = "y") -> None:
    """Log scale with plain tick labels (0.1, 1, 10, not 10^-1)."""
    from matplotlib.ticker import FuncFormatter

    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    def plain(v: float, _pos=None) -> str:
        return f"{v:,.0f}" if v >= 1 else f"{v:.6g}"

    target = ax.yaxis if axis == "y" else ax.xaxis

    def minor(v: float, _pos=None) -> str:
        # a range under two decades shows one or two decade ticks: label 2s and 5s too
        lo, hi = sorted(target.get_view_interval())
        if v <= 0 or lo <= 0 or hi / lo > 100:
            return ""
        lead = round(v / 10 ** math.floor(math.log10(v)))
        return plain(v) if lead in (2, 5) else ""

    target.set_major_formatter(FuncFormatter(plain))
    target.set_minor_formatter(FuncFormatter(minor))


def _main_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Steady-state cells at each config's main batch size (where every phase ran)."""
    ok = df[(df["status"] == "ok") & df["phase"].isin(PHASE_COLOURS)]
    return main_rows(ok) if not ok.empty else ok


def _save(fig, out: Path, stem: str) -> Path:
    """Write the PNG `out/<stem>.png` atomically (temp file + rename): the stem goes
    through the one sanitiser (`safe_name`), the writer refuses anything that resolves
    outside `out`, and a link planted at the path is replaced, never written through."""
    import matplotlib.pyplot as plt

    path = Path(out) / f"{safe_name(stem)}.png"
    try:
        write_atomic(path, lambda fh: fig.savefig(fh, format="png", bbox_inches="tight"),
                     root=out)
    finally:
        plt.close(fig)
    return path


def grouped_bars(rows: pd.DataFrame, x_col: str, series_col: str, series: list[str],
                 colours: dict[str, Any], ylabel: str, title: Callable[[str, pd.DataFrame], str],
                 legend: str, out: Path, stem: str) -> Path | None:
    """One panel per config of `rows`: bars of the median (whiskers: IQR) at each value of
    `x_col`, one bar per value of `series_col` (in the order of `series`, coloured by
    `colours`), a log axis when the values span more than `WIDE`. The one grouped-bar
    figure of the report and the merged report; saved through `_save` (sanitised name)."""
    if rows.empty:
        return None
    plt = _plt()
    configs = list(dict.fromkeys(rows["config"]))
    fig, axes = plt.subplots(len(configs), 1, figsize=(11, 3.6 * len(configs)), squeeze=False)
    for ax, config in zip(axes[:, 0], configs, strict=True):
        part = rows[rows["config"] == config]
        xs = sorted(dict.fromkeys(part[x_col]))
        present = [s for s in series if s in set(part[series_col])]
        width = 0.8 / len(present)
        x = np.arange(len(xs))
        for i, name in enumerate(present):
            sel = part[part[series_col] == name].set_index(x_col).reindex(xs)
            med = sel["median"].to_numpy() * 1e3
            err = np.vstack([med - sel["q1"].to_numpy() * 1e3, sel["q3"].to_numpy() * 1e3 - med])
            ax.bar(x + (i - (len(present) - 1) / 2) * width, med, width, yerr=np.abs(err),
                   capsize=2, label=name, color=colours[name])
        values = part["median"].to_numpy() * 1e3
        log = values.size and values.max() / max(values.min(), 1e-12) > WIDE
        if log:
            _plain_log(ax)
        ax.set_xticks(x, xs, rotation=20, ha="right")
        ax.set_ylabel(ylabel + (" (ms, log scale)" if log else " (ms)"))
        ax.set_title(title(config, part) + " (bars: median, whiskers: IQR)")
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(title=legend, fontsize=9)
    fig.tight_layout()
    return _save(fig, out, stem)


def task_bars(df: pd.DataFrame, task: str, out: Path) -> Path | None:
    rows = _main_rows(df)
    rows = rows[rows["task"] == task]
    return grouped_bars(
        rows, "impl", "phase", list(PHASE_COLOURS), PHASE_COLOURS, "median time per call",
        lambda config, part: f"{config}, batch {int(part['batch_size'].iloc[0])}",
        "phase", out, f"bars_{task}")


def throughput_grid(step: pd.DataFrame, configs: list[str], keys: list[str],
                    style: Callable[[tuple], LineStyle | VariantStyle],
                    label: Callable[[tuple], str], legend: str | None, out: Path,
                    stem: str) -> Path | None:
    """Training samples/s against batch size (log-log), one panel per config, one line per
    group of `step` by `keys` drawn in `style(key)`: the one throughput figure of the
    report and the merged report."""
    if not configs:
        return None
    plt = _plt()
    cols = min(3, len(configs))
    nrows = math.ceil(len(configs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4 * nrows), squeeze=False)
    for ax, config in zip(axes.flat, configs, strict=False):
        part = step[step["config"] == config]
        for key, line in part.groupby(keys):
            key = key if isinstance(key, tuple) else (key,)
            line = line.sort_values("batch_size")
            st = style(key)
            ax.plot(line["batch_size"], line["samples_per_s"], marker=st.marker,
                    linestyle=st.linestyle, color=st.colour, label=label(key))
        sizes = sorted(set(part["batch_size"]))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(b)) for b in sizes])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        _plain_log(ax)
        ax.set_xlabel("batch size (log scale)")
        ax.set_ylabel("training samples/s, step (log scale)")
        ax.set_title(config)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, title=legend)
    for ax in list(axes.flat)[len(configs):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, out, stem)


def throughput(df: pd.DataFrame, out: Path) -> Path | None:
    step = df[(df["phase"] == "step") & (df["status"] == "ok")]
    configs = [c for c, p in step.groupby("config", sort=False) if p["batch_size"].nunique() > 1]
    styles = run_styles(df) if configs else {}
    return throughput_grid(step, configs, ["impl"], lambda key: styles[key[0]],
                           lambda key: key[0], None, out, "throughput")


def gradient_heatmap(df: pd.DataFrame, out: Path) -> Path | None:
    plt = _plt()
    from matplotlib.colors import LogNorm

    rows = df[df["phase"].isin(PHASE_COLOURS)].drop_duplicates(["config", "impl", "dtype",
                                                                 "device"])
    rows = rows[rows["grad_err"].notna()]
    if rows.empty:
        return None
    grid = rows.pivot_table(index="config", columns="impl", values="grad_err", aggfunc="max")
    passed = rows.pivot_table(index="config", columns="impl", values="grad_passed",
                              aggfunc=lambda s: all(bool(v) for v in s))
    flips = None
    if "kink_flips" in rows and rows["kink_flips"].notna().any():
        counts = rows.assign(kink_flips=pd.to_numeric(rows["kink_flips"], errors="coerce"))
        flips = counts.pivot_table(index="config", columns="impl", values="kink_flips",
                                   aggfunc="max").reindex(index=grid.index, columns=grid.columns)
    values = grid.to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    lo = positive.min() if positive.size else 1e-12
    hi = max(positive.max() if positive.size else 1.0, lo * 10)
    fig, ax = plt.subplots(figsize=(1.1 * len(grid.columns) + 4, 0.55 * len(grid.index) + 2.2))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#DDDDDD")  # grey: not run / n/a
    shown = np.ma.masked_invalid(np.where(np.isnan(values), np.nan, np.maximum(values, lo)))
    image = ax.imshow(shown, norm=LogNorm(vmin=lo, vmax=hi), cmap=cmap, aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if not np.isfinite(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#666666")
                continue
            ok = bool(passed.iloc[i, j]) if not pd.isna(passed.iloc[i, j]) else False
            k = flips.iloc[i, j] if flips is not None else math.nan
            kinks = f"\n{int(k)} kinks" if not pd.isna(k) and k > 0 else ""
            ax.text(j, i, f"{v:.0e}" + ("" if ok else "\nFAIL") + kinks, ha="center",
                    va="center", fontsize=8,
                    color="white" if v < math.sqrt(lo * hi) else "black")
    ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(grid.index)), grid.index)
    ax.set_title("Gradient agreement: max normwise relative error vs float64 NumPy\n"
                 "(N kinks: ReLU/max-pool masks that differ; agreement judged after alignment)")
    fig.colorbar(image, ax=ax, label="max relative error (log scale)")
    fig.tight_layout()
    return _save(fig, out, "gradient_error")


def memory(df: pd.DataFrame, out: Path) -> Path | None:
    """Peak memory of the step phase against batch size, one panel per config;
    hollow markers: process-wide figures (RSS or an allocator's lifetime bound)."""
    plt = _plt()
    step = df[(df["phase"] == "step") & (df["status"] == "ok")]
    step = step[pd.to_numeric(step["peak_memory_bytes"], errors="coerce").notna()]
    configs = list(dict.fromkeys(step["config"]))
    if not configs:
        return None
    cols = min(3, len(configs))
    nrows = math.ceil(len(configs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4 * nrows), squeeze=False)
    styles = run_styles(df)
    for ax, config in zip(axes.flat, configs, strict=False):
        part = step[step["config"] == config]
        for impl, line in part.groupby("impl"):
            line = line.sort_values("batch_size")
            st = styles[impl]
            process = (line["memory_scope"] == "process").all()
            ax.plot(line["batch_size"], line["peak_memory_bytes"].astype(float) / 1e6,
                    marker=st.marker, linestyle=st.linestyle, color=st.colour,
                    markerfacecolor="none" if process else None,
                    label=impl + (" (process-wide)" if process else ""))
        sizes = sorted(set(part["batch_size"]))
        if len(sizes) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(b)) for b in sizes])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel("peak memory over the cell's window (MB)")
        ax.set_title(config)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(configs):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, out, "memory")


def first_call(df: pd.DataFrame, out: Path) -> Path | None:
    plt = _plt()
    first = df[(df["phase"] == "first_call") & (df["status"] == "ok")]
    steady = df[(df["phase"] == "step") & (df["status"] == "ok")]
    lookup = {(r.config, r.impl, r.batch_size): r.median for r in steady.itertuples()}
    rows = [(f"{r.config}  {r.impl}", r.median, lookup.get((r.config, r.impl, r.batch_size)))
            for r in first.itertuples()]
    rows = [r for r in rows if r[2] is not None]
    if not rows:
        return None
    labels = [r[0] for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.8))
    ax.barh(y - 0.2, [r[1] * 1e3 for r in rows], 0.4, label="first call (trace/compile + run)",
            color="#C44E52")
    ax.barh(y + 0.2, [r[2] * 1e3 for r in rows], 0.4, label="steady-state step (median)",
            color="#55A868")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    _plain_log(ax, "x")
    ax.set_xlabel("time per call (ms, log scale)")
    ax.set_title("First call against steady state (step phase, main batch size)")
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, out, "first_call")


PRECISION_MARKERS = {"fp32": "o", "tf32": "s", "bf16": "^", "fp16": "D"}


def precision_scatter(df: pd.DataFrame, out: Path) -> Path | None:
    """Speed-up over strict fp32 against gradient error vs float64: one point per
    timed float32 cell (every phase and batch size), strict cells included at 1x."""
    if "precision_mode" not in df or set(df["precision_mode"]) <= {"fp32"}:
        return None
    cells = precision_speedups(df)
    cells = cells[cells["speedup_fp32"].notna() & cells["prec_grad_err"].notna()]
    if cells.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    for (backend, mode), part in cells.groupby(["backend", "precision_mode"]):
        ax.scatter(np.maximum(part["prec_grad_err"], 1e-12), part["speedup_fp32"],
                   marker=PRECISION_MARKERS.get(mode, "x"), s=36, alpha=0.75,
                   color=BACKEND_COLOURS.get(backend), label=f"{backend} {mode}",
                   facecolors="none" if mode == "fp32" else None)
    ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    _plain_log(ax, "y")
    ax.set_xlabel("worst gradient normwise relative error vs float64 (log scale)")
    ax.set_ylabel("speed-up over strict fp32 (x, log scale)")
    ax.set_title("Precision modes: speed-up against error (one point per cell)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return _save(fig, out, "precision_speedup_error")


def abstraction(df: pd.DataFrame, out: Path) -> Path | None:
    """Idiomatic / primitives median ratio: one panel per framework pair, a row of
    bars (one per phase) per config, on a log axis so 2x slower and 2x faster
    stand equally far from the line at 1."""
    rows = abstraction_rows(df)
    if rows.empty:
        return None
    plt = _plt()
    several = rows[["dtype", "device"]].drop_duplicates().shape[0] > 1
    rows = rows.assign(
        panel=rows["backend"] + ": " + rows["pair"],
        label=rows["config"] + ((" " + rows["device"] + " " + rows["dtype"]) if several else ""))
    panels = list(dict.fromkeys(rows["panel"]))
    labels = sorted(dict.fromkeys(rows["label"]))
    phases = [p for p in PHASE_COLOURS if p in set(rows["phase"])]
    height = 0.8 / max(len(phases), 1)
    lo = min(rows["ratio"].min(), 0.5) / 1.2
    hi = max(rows["ratio"].max(), 2.0) * 1.2
    size = (3.6 * len(panels) + 2.5, 0.3 * len(labels) * len(phases) + 1.6)
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False, figsize=size)
    y = np.arange(len(labels))
    for ax, panel in zip(axes[0], panels, strict=True):
        part = rows[rows["panel"] == panel]
        for i, phase in enumerate(phases):
            sel = part[part["phase"] == phase].set_index("label").reindex(labels)
            ax.barh(y - (i - (len(phases) - 1) / 2) * height, sel["ratio"].to_numpy(), height,
                    label=phase, color=PHASE_COLOURS[phase])
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
        ax.minorticks_off()
        ax.set_title(panel, fontsize=10)
        ax.grid(axis="x", alpha=0.3, which="both")
        ax.set_xlabel("idiomatic / primitives (log)")
    axes[0][0].set_yticks(y, labels, fontsize=8)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(title="phase", fontsize=8, loc="lower right")
    fig.suptitle("The cost of abstraction: the framework's layer library against nnparity's "
                 "primitive ops (right of 1: the layer library is slower)", fontsize=11)
    fig.tight_layout()
    return _save(fig, out, "abstraction")


def draw_all(df: pd.DataFrame, out: Path) -> list[str]:
    """Every figure this run supports; returns the written paths."""
    made = [task_bars(df, task, out) for task in dict.fromkeys(df["task"]) if task != "gemm"]
    made += [throughput(df, out), memory(df, out), gradient_heatmap(df, out),
             first_call(df, out), abstraction(df, out)]
    made.append(precision_scatter(df, out))
    return [str(p) for p in made if p is not None]
