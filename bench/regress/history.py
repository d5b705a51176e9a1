"""One row per cell per run in results/history.csv, and its plots: the library of
`nnparity history` (bench/commands/history.py).

`append_history` adds a run's cells (commit, date, machine, cell, median, IQR,
rounds and the verdict of comparing the run with its machine's baseline) to
the CSV, atomically and idempotently (re-adding a run replaces its rows).
`plot_history` draws, for one machine, each cell's median over commits with
flagged regressions marked: one PNG per task (with its knobs) and phase.

This module must not run benchmarks, and must never lose history: the CSV is
rewritten only through a temp file + rename, and not at all when an input is bad.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.options import OutputError
from bench.results.paths import HISTORY_FILE, HISTORY_PLOTS
from bench.results.read import LoadError, RunInfo
from bench.results.schema import parse_cell_id
from bench.results.write import file_lock, safe_name, write_atomic, write_text_atomic

COLUMNS = ("commit", "date", "machine", "cell", "task", "backend", "variant", "device",
           "dtype", "phase", "median_s", "iqr_s", "rounds", "flag")
_KEY = ["commit", "date", "machine", "cell"]


def read_history(path: Path = HISTORY_FILE) -> pd.DataFrame:
    """The history table (empty with the right columns when there is none yet)."""
    if not Path(path).exists():
        return pd.DataFrame(columns=list(COLUMNS))
    try:
        df = pd.read_csv(path, dtype={"commit": str, "flag": str}, keep_default_na=False,
                         na_values={"median_s": [""], "iqr_s": [""]})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise LoadError(f"{path}: not a readable history CSV ({type(exc).__name__})") from None
    except OSError as exc:
        raise LoadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    missing = [c for c in ("commit", "date", "machine", "cell", "median_s") if c not in df]
    if missing:
        raise LoadError(f"{path}: not a history CSV (no column {missing[0]!r})")
    df = df.reindex(columns=list(COLUMNS))
    if len(df) and _torn_last_row(path, df):
        # an append cut short (a full disk, a kill): the last line is incomplete. Drop it
        # rather than keep a junk row and write it back; every whole row is kept.
        print(f"warning: {path}: last line is incomplete; ignored", file=sys.stderr)
        df = df.iloc[:-1]
    for column in ("median_s", "iqr_s", "rounds"):
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() & df[column].notna() & (df[column].astype(str) != "")
        if column == "median_s":
            bad |= ~((values > 0) & (values < float("inf")))
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise LoadError(f"{path}: line {row + 2}: {column} {df[column].iloc[row]!r} "
                            "is not a positive number")
        df[column] = values
    for column in ("commit", "date", "machine", "cell"):
        empty = df[column].isna() | (df[column].astype(str) == "")
        if column != "commit" and empty.any():
            row = int(empty.to_numpy().argmax())
            raise LoadError(f"{path}: line {row + 2}: {column} is empty")
    for row, cell in enumerate(df["cell"]):
        try:  # the plots group rows by the cell id's parts
            parse_cell_id(str(cell))
        except ValueError:
            raise LoadError(f"{path}: line {row + 2}: cell {str(cell)[:80]!r} is not a "
                            "cell id") from None
    return df.reset_index(drop=True)


def _torn_last_row(path: Path, df: pd.DataFrame) -> bool:
    """Whether the file's last line was cut short: no final newline and fewer fields
    than the header (pandas pads such a row with empty values)."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return False
        fh.seek(-1, 2)
        if fh.read(1) == b"\n":
            return False
    return bool(df.iloc[-1].isna().any())


def history_rows(run: pd.DataFrame, flags: dict[str, str] | None = None) -> pd.DataFrame:
    """One history row per ok, timed cell of `run`; `flags` maps cell -> verdict."""
    info: RunInfo = run.attrs["run"]
    ok = run[(run["status"] == "ok") & (run["rounds"] > 0)]
    flags = flags or {}
    return pd.DataFrame({
        "commit": info.commit, "date": info.date, "machine": info.fingerprint,
        "cell": ok["cell"], "task": ok["task"], "backend": ok["backend"],
        "variant": ok["variant"], "device": ok["device"], "dtype": ok["dtype"],
        "phase": ok["phase"], "median_s": ok["median"], "iqr_s": ok["iqr"],
        "rounds": ok["rounds"], "flag": [flags.get(c, "") for c in ok["cell"]],
    }, columns=list(COLUMNS))


def append_history(run: pd.DataFrame | list[pd.DataFrame], path: Path = HISTORY_FILE,
                   flags: dict[str, str] | list[dict[str, str]] | None = None) -> int:
    """Add (or replace) the run's rows in the history CSV; returns the rows written.
    `run` may be one table per machine (with one `flags` each): every row carries the
    machine that measured it. The read-modify-write holds the CSV's lock, so
    concurrent additions take turns and none loses another's rows."""
    runs = run if isinstance(run, list) else [run]
    all_flags = flags if isinstance(flags, list) else [flags or {}] * len(runs)
    parts = [history_rows(r, f) for r, f in zip(runs, all_flags, strict=True)]
    new = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    with file_lock(path):
        old = read_history(path)
        both = pd.concat([old, new], ignore_index=True) if len(old) else new
        both = both.drop_duplicates(subset=_KEY, keep="last").sort_values(["date", "cell"])
        write_text_atomic(path, both.to_csv(index=False, float_format="%.9g"))
    return len(new)


def plot_history(history: pd.DataFrame, out_dir: Path = HISTORY_PLOTS,
                 machine: str | None = None) -> list[Path]:
    """One PNG per (task with knobs, phase): median ms over commits, IQR bars,
    flagged regressions ringed in red. Only one machine's rows are drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if history.empty:
        return []
    machine = machine or str(history.sort_values("date")["machine"].iloc[-1])
    df = history[history["machine"] == machine].copy()
    runs = df[["date", "commit"]].drop_duplicates().sort_values("date").reset_index(drop=True)
    labels = [f"{str(c)[:8] or '?'}\n{str(d)[:10]}"
              for d, c in zip(runs["date"], runs["commit"], strict=True)]
    x_of = {(d, c): i for i, (d, c) in enumerate(zip(runs["date"], runs["commit"], strict=True))}
    df["x"] = [x_of[(d, c)] for d, c in zip(df["date"], df["commit"], strict=True)]
    # a cell id is [preset/]config/backend/variant/device/dtype/bsN/phase
    df["group"] = [(parse_cell_id(c).group + " " + str(p)) for c, p in zip(df["cell"], df["phase"],
                                                                  strict=True)]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    written = []
    for group, rows in df.groupby("group", sort=True):
        fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(runs) + 3), 4.5))
        for cell, line in rows.groupby("cell", sort=True):
            line = line.sort_values("x")
            label = parse_cell_id(cell).where
            ax.errorbar(line["x"], line["median_s"] * 1e3, yerr=line["iqr_s"] * 1e3 / 2,
                        marker="o", ms=4, capsize=3, label=label)
            bad = line[line["flag"] == "regression"]
            ax.scatter(bad["x"], bad["median_s"] * 1e3, s=140, facecolors="none",
                       edgecolors="red", linewidths=2, zorder=5)
        if (rows["flag"] == "regression").any():
            ax.scatter([], [], s=140, facecolors="none", edgecolors="red", linewidths=2,
                       label="flagged regression")
        ax.set_yscale("log")
        # plain numbers ("20", "30") instead of 2x10^1; minor labels only on narrow ranges
        log_fmt = matplotlib.ticker.LogFormatter
        ax.yaxis.set_major_formatter(log_fmt(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(log_fmt(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.set_xticks(range(len(runs)), labels, fontsize=7)
        ax.set_xlabel("commit (date)")
        ax.set_ylabel("median time per call [ms] (bars: IQR)")
        ax.set_title(f"{group} on machine {machine}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"{safe_name(str(group))}.png"
        try:  # temp file + rename: never through a link planted at `path`
            write_atomic(path, lambda fh, fig=fig: fig.savefig(fh, format="png", dpi=110),
                         root=out_dir)
        finally:
            plt.close(fig)
        written.append(path)
    return written


