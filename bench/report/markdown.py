"""REPORT.md of one run: the tables, as the library behind `nnparity report`.

The command itself (options, figures, writing the files, the merged and HTML
reports) is bench/commands/report.py; this module, which `plots`, `html`
and `machines` import, imports none of them. Reads the run with
`bench.results.read.load_run`, turns it into one tidy table (one
row per cell, extra_info flattened, each steady cell's 95% interval from its raw
samples by `bench.results.stats.cell_interval`), and writes: a headline (cells
unstable, samples and rounds, a modified tree, a busy machine), a ranked summary
per task and phase (each framework's fastest variant; ties where the "~" rule
says within noise), Markdown tables per task
(backend/variant x phase: median, its CI, IQR, samples (rounds), samples/s, % of
the device's GEMM peak and of the framework's own, speed-up against the NumPy
reference with its CI), the batch-size sweep, gradient
agreement, first-call cost, calibration, validity flags, errors and the
environment; with precision modes, each mode's speed-up over strict fp32
beside its error against float64 (`precision_table`, n/a where a backend does
not offer the mode). It never runs or times anything, and never imports a
framework.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.gaps import GAP_FACTOR, unexplained, variant_gaps
from bench.results.escape import md_text
from bench.results.read import main_batch
from bench.results.schema import (
    CALIBRATION,
    STEADY_PHASES,
    STRICT_PRECISION,
    config_label,
    parse_cell_id,
)
from bench.results.stats import (
    NOISE_BAND,
    ROUNDS_DISAGREE,
    UNSTABLE_IQR,
    cell_interval,
    ratio_interval,
    seed_for,
    within_noise,
)
from bench.results.text import number

IQR_LIMIT = UNSTABLE_IQR  # IQR / median at or above this: unstable (bench/results/stats.py)
#: bootstrap replicates per cell in the report (compare uses 2000): enough for the
#: 95% interval's endpoints to ~1-2% of its width, at ~20 ms a cell
REPORT_RESAMPLES = 1000
PEAK_SLACK = 1.05  # a cell above the measured peak by more than timer noise is impossible


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell with extra_info flattened and derived rates added."""
    extra = [r.get("extra_info", {}) if isinstance(r, dict) else {} for r in df["raw"]]
    out = df.drop(columns=["raw"]).copy()
    out["config"] = [config_label(c) for c in out["cell"]]
    out["precision_mode"] = [_mode(c) for c in out["cell"]]
    # a reduced mode is another implementation in every table: "torch/eager+bf16"
    out["impl"] = out["backend"] + "/" + out["variant"].astype(str) + [
        "" if m == STRICT_PRECISION else f"+{m}" for m in out["precision_mode"]]
    out["flops"] = [e.get("flops") for e in extra]
    out["retraces"] = [e.get("retraces") for e in extra]
    out["gemm_size"] = [e.get("gemm_size") for e in extra]
    out["peak_memory_bytes"] = [e.get("peak_memory_bytes") for e in extra]
    out["memory_source"] = [e.get("memory_source", "") for e in extra]
    out["memory_method"] = [e.get("memory_method", "") for e in extra]
    # records written before methods were recorded measured process-wide (RSS / lifetime)
    out["memory_scope"] = [e.get("memory_scope") or "process" for e in extra]
    out["memory_growth_bytes"] = [e.get("memory_growth_bytes") for e in extra]
    out["precision"] = [e.get("precision", "") for e in extra]
    grad = [e.get("gradcheck") or {} for e in extra]
    out["grad_passed"] = [g.get("passed") for g in grad]
    out["grad_err"] = [g.get("max_rel_err") for g in grad]
    out["grad_tol"] = [g.get("tolerance") for g in grad]
    out["grad_error"] = [g.get("error", "") for g in grad]
    perr = [e.get("precision_error") or {} for e in extra]
    for column, key in (("prec_loss_err", "loss_rel_err"), ("prec_grad_err", "grad_rel_err"),
                        ("prec_traj_err", "trajectory_rel_err")):
        out[column] = [_float(e.get(key)) for e in perr]
    out["prec_steps"] = [e.get("trajectory_steps") for e in perr]
    out["prec_flags"] = ["; ".join(e.get("flags", [])) or e.get("error", "") for e in perr]
    out["prec_expected"] = [e.get("expected", {}) for e in perr]
    out["grad_verdict"] = [g.get("verdict", "") for g in grad]
    out["kink_flips"] = [g.get("kink_flips") for g in grad]
    out["grad_aligned_err"] = [g.get("aligned_rel_err") for g in grad]
    out["iqr_rel"] = out["iqr"] / out["median"]
    sizes = out["round_sizes"] if "round_sizes" in out else [[]] * len(out)
    out["interval"] = [
        cell_interval(x, rs if isinstance(rs, list) else (), resamples=REPORT_RESAMPLES,
                      seed=seed_for(c))
        if st == "ok" and len(x) and ph in STEADY_PHASES else None
        for c, x, rs, st, ph in zip(out["cell"], out["samples"], sizes, out["status"],
                                    out["phase"], strict=True)]
    out["ci_low"] = [i.low if i else math.nan for i in out["interval"]]
    out["ci_high"] = [i.high if i else math.nan for i in out["interval"]]
    out["n_rounds"] = [i.rounds if i else 0 for i in out["interval"]]
    out["unstable"] = [i.unstable if i else "" for i in out["interval"]]
    bs = pd.to_numeric(out["batch_size"], errors="coerce")
    out["samples_per_s"] = bs / out["median"]
    flops = pd.to_numeric(out["flops"], errors="coerce")
    out["flops_per_s"] = flops / out["median"]
    peaks = calibration_peaks(out)
    out["peak_flops"] = [peaks.get((b, d), math.nan) for b, d in zip(out["backend"], out["device"],
                                                                      strict=True)]
    best = {d: max(v for (_, dd), v in peaks.items() if dd == d) for _, d in peaks}
    out["machine_peak"] = [best.get(d, math.nan) for d in out["device"]]
    # one device peak: the best float32 GEMM rate any framework reached on that device;
    # each framework's own best GEMM stays beside it, labelled as such
    out["pct_peak"] = 100 * out["flops_per_s"] / out["machine_peak"]
    out["pct_own_peak"] = 100 * out["flops_per_s"] / out["peak_flops"]
    ref = out[(out["backend"] == "numpy") & (out["status"] == "ok")]
    ref_cell = {(r.config, r.dtype, r.batch_size, r.phase): r for r in ref.itertuples()}
    speed = []
    for r in out.itertuples():
        numpy_cell = ref_cell.get((r.config, r.dtype, r.batch_size, r.phase))
        if numpy_cell is None:
            speed.append((math.nan, math.nan, math.nan))
        elif numpy_cell.interval is not None and r.interval is not None:
            speed.append(ratio_interval(numpy_cell.interval, r.interval))
        else:
            speed.append((numpy_cell.median / r.median, math.nan, math.nan))
    out["speedup"] = [v[0] for v in speed]
    out["speedup_low"] = [v[1] for v in speed]
    out["speedup_high"] = [v[2] for v in speed]
    return out


def ratio_text(ratio: float, low: float, high: float, band: float = NOISE_BAND) -> str:
    """A ratio with its 95% interval, "~" in front when it is within noise (the rule
    in `RULE_TEXT`): "1.49x [1.40, 1.58]", "~1.01x [0.97, 1.05]"."""
    if ratio is None or pd.isna(ratio):
        return "n/a"
    if pd.isna(low) or pd.isna(high):
        return f"{ratio:.2f}x"
    mark = "~" if within_noise(low, high, band) else ""
    return f"{mark}{ratio:.2f}x [{low:.2f}, {high:.2f}]"


RULE_TEXT = (
    f"Every ratio shows its 95% confidence interval, from the raw samples by a seeded "
    f"bootstrap that resamples rounds (independent worker processes), then samples within "
    f"each chosen round, so it includes how much a cell moves from one process to the "
    f"next (a run or cell with one round sees only the noise inside that process). "
    f"**The \"~\" rule:** a ratio counts as a difference only when its interval lies "
    f"wholly outside the noise band [1/{1 + NOISE_BAND:g}, {1 + NOISE_BAND:g}] (+-"
    f"{NOISE_BAND:.0%}); otherwise it is marked \"~\" (within noise), and in the summary "
    f"the two are a tie. A cell is **unstable** when its IQR is at least "
    f"{UNSTABLE_IQR:.0%} of its median or its rounds' medians are more than "
    f"{ROUNDS_DISAGREE:.0%} apart. IQR is pytest-benchmark's: Q3 - Q1 with the quartiles "
    f"by Wikipedia's method 1 (medians of the halves) for an even sample count and "
    f"method 3 for an odd one, over all of a cell's samples.")


def _mode(cell: str) -> str:
    try:
        return parse_cell_id(cell).precision
    except ValueError:  # a foreign benchmark name
        return STRICT_PRECISION


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def precision_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """Every ok float32 cell with `speedup_fp32`: the strict fp32 cell's median (same
    config, backend, variant, device, batch size and phase) over this one's."""
    ok = df[(df["status"] == "ok") & df["phase"].isin(STEADY_PHASES)
            & (df["dtype"] == "float32")].copy()
    key = ["config", "backend", "variant", "device", "batch_size", "phase"]
    strict = ok[ok["precision_mode"] == STRICT_PRECISION].set_index(key)["median"]
    strict = strict[~strict.index.duplicated()]
    base = [strict.get(tuple(r), math.nan) for r in ok[key].itertuples(index=False)]
    ok["speedup_fp32"] = [b / m if m > 0 else math.nan for b, m in zip(base, ok["median"],
                                                                     strict=True)]
    if "interval" in ok:
        spans = ok[ok["precision_mode"] == STRICT_PRECISION].set_index(key)["interval"]
        spans = spans[~spans.index.duplicated()]
        cis = [ratio_interval(spans.get(tuple(r)), i)
               if spans.get(tuple(r)) is not None and i is not None
               else (math.nan, math.nan, math.nan)
               for r, i in zip(ok[key].itertuples(index=False), ok["interval"], strict=True)]
        ok["speedup_fp32_low"] = [c[1] for c in cis]
        ok["speedup_fp32_high"] = [c[2] for c in cis]
    return ok


def run_precisions(df: pd.DataFrame) -> list[str]:
    """The precision modes a run asked for (its description), else those it has cells for."""
    asked = (df.attrs.get("machine_info", {}).get("nnparity", {}) or {}).get("precisions")
    found = list(dict.fromkeys(df.get("precision_mode", pd.Series(dtype=str))))
    modes = list(asked or found)
    return sorted(modes, key=lambda m: (m != STRICT_PRECISION, m))


def precision_table(df: pd.DataFrame) -> str:
    """Per task config and backend/variant/device: each precision mode's speed-up over
    strict fp32 (forward, backward, step at the main batch size) beside its error
    against float64; n/a where the backend does not offer the mode."""
    modes = run_precisions(df)
    if modes == [STRICT_PRECISION] or not modes:
        return "_Strict fp32 only: run with `--precisions fp32,bf16` (tf32, fp16 on GPU) " \
               "to compare precision modes._"
    cells = precision_speedups(df)
    rows = []
    for config, part in cells.groupby("config", sort=False):
        main = part[part["batch_size"] == main_batch(part)]
        for (backend, variant, device), where in main.groupby(
                ["backend", "variant", "device"], sort=False):
            for mode in modes:
                mine = where[where["precision_mode"] == mode]
                label = [config, f"{backend}/{variant}", device, mode]
                if mine.empty:
                    rows.append([*label, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a",
                                 "", "not offered (or not run)"])
                    continue
                by_phase = {r.phase: r for r in mine.itertuples()}
                step = by_phase.get("step")
                first = mine.iloc[0]
                expected = first["prec_expected"].get("gradient") if isinstance(
                    first["prec_expected"], dict) else None
                rows.append([
                    *label,
                    _ms(step.median) if step is not None else "n/a",
                    *[_speedup(by_phase.get(p)) for p in STEADY_PHASES],
                    _sci(first["prec_loss_err"]), _sci(first["prec_grad_err"]),
                    _sci(first["prec_traj_err"]),
                    f"{expected[0]:.0e}..{expected[1]:.0e}" if expected else "gated",
                    (first["prec_flags"] or "")[:120],
                ])
    if not rows:
        return "_No float32 cells timed ok in this run._"
    steps = next((int(s) for s in cells["prec_steps"] if s is not None and not pd.isna(s)), 20)
    return markdown_table(
        ["config", "backend/variant", "device", "precision", "step ms", "forward x",
         "backward x", "step x", "loss err", "grad err", f"loss err {steps} steps",
         "expected grad err", "flag"], rows)


def _speedup(row: Any) -> str:
    if row is None or pd.isna(row.speedup_fp32):
        return "n/a"
    return ratio_text(row.speedup_fp32, getattr(row, "speedup_fp32_low", math.nan),
                      getattr(row, "speedup_fp32_high", math.nan))


def calibration_peaks(df: pd.DataFrame) -> dict[tuple[str, str], float]:
    cal = df[(df["phase"] == CALIBRATION) & (df["status"] == "ok")]
    return {(r.backend, r.device): float(r.gflops) * 1e9 for r in cal.itertuples()
            if r.gflops is not None and not pd.isna(r.gflops)}


def flags(df: pd.DataFrame) -> pd.DataFrame:
    """Cells whose timing should not be trusted, with the reason."""
    rows = []
    timed = df[(df["status"] == "ok") & df["phase"].isin(STEADY_PHASES)]
    for r in timed.itertuples():
        if r.flops_per_s > PEAK_SLACK * r.machine_peak:
            rows.append((r.cell, f"{r.flops_per_s / 1e9:.1f} GFLOP/s exceeds the measured peak "
                                 f"{r.machine_peak / 1e9:.1f} (missing sync or eliminated work?)"))
        if getattr(r, "unstable", ""):
            rows.append((r.cell, f"unstable: {r.unstable}"))
        if r.retraces is not None and r.retraces > 0:
            rows.append((r.cell, f"{r.retraces} retrace(s)/recompile(s) after warm-up"))
        if r.grad_passed is False:
            rows.append((r.cell, f"gradient agreement failed (max rel err {_sci(r.grad_err)})"))
    return pd.DataFrame(rows, columns=["cell", "flag"])


# -- formatting -----------------------------------------------------------------------------

def _sci(value: Any) -> str:
    return number(value, ".1e")


def _ms(value: float) -> str:
    if pd.isna(value):
        return "n/a"
    ms = value * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def memory_text(r: Any) -> str:
    """Peak memory in MB, marked "*" when the figure is process-wide (see the legend)."""
    value = getattr(r, "peak_memory_bytes", None)
    if value is None or pd.isna(value):
        return "n/a"
    return f"{value / 1e6:,.0f}" + ("*" if getattr(r, "memory_scope", "") == "process" else "")


MEMORY_LEGEND = ("Peak MB is each cell's peak over its own window (warm-up and timed calls; "
                 "the program and batch exist already). Unmarked: the framework's device "
                 "allocator, its peak reset at the window's start (or, for JAX, a new peak "
                 "set inside the window). `*`: process-wide, the resident-set high-water mark "
                 "reset at the window's start (CPU), or an upper bound where the allocator "
                 "could not be reset; it includes the interpreter and framework libraries. "
                 "`(+N)`: MB the cell's own calls added to what was resident when its window "
                 "opened (by difference).")


def _num(value: float, fmt: str) -> str:
    return number(value, fmt)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """Numbers right-aligned, text left-aligned (judged by the first row)."""
    first = rows[0] if rows else [""] * len(headers)
    align = ["--:" if _numeric(str(c)) else "---" for c in first]
    lines = ["| " + " | ".join(md_text(h) for h in headers) + " |",
             "| " + " | ".join(align) + " |"]
    # every cell may hold a results file's text: escaped, it stays one cell of one row
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,.]+(e[-+]?\d+)?(%|x)?|n/a", text.strip()))


def _where(r: Any, multi: bool) -> str:
    return f"{r.impl} ({r.device}, {r.dtype})" if multi else r.impl


def timing_tables(df: pd.DataFrame) -> list[str]:
    out = []
    ok = df[df["phase"].isin(STEADY_PHASES)]
    multi = ok[["device", "dtype"]].drop_duplicates().shape[0] > 1
    for config, part in ok.groupby("config", sort=False):
        main = part[part["batch_size"] == main_batch(part)]
        rows = []
        for r in main.sort_values(["phase", "backend", "variant"], key=_phase_key).itertuples():
            if r.status != "ok":
                rows.append([r.phase, _where(r, multi), "error", "", "", "", "", "", "", "",
                             "", ""])
                continue
            rows.append([r.phase, _where(r, multi), _ms(r.median), _ci_ms(r),
                         _num(r.iqr_rel, ".0%"), _samples(r), _num(r.samples_per_s, ",.0f"),
                         _num(r.pct_peak, ".2g"), _num(r.pct_own_peak, ".2g"),
                         ratio_text(r.speedup, r.speedup_low, r.speedup_high)
                         if r.backend != "numpy" else "1 (reference)",
                         memory_text(r), _stability(r)])
        bs = int(main_batch(part))
        out.append(f"### {md_text(config)} (batch {bs})\n\n" + markdown_table(
            ["phase", "backend/variant", "median ms", "95% CI ms", "IQR", "samples (rounds)",
             "samples/s", "% of device peak", "% of own GEMM", "vs NumPy", "peak MB",
             "stability"], rows))
    return out


def _ci_ms(r: Any) -> str:
    if pd.isna(r.ci_low) or pd.isna(r.ci_high):
        return "n/a"
    return f"{_ms(r.ci_low)}-{_ms(r.ci_high)}"


def _samples(r: Any) -> str:
    return f"{int(r.rounds)} ({int(r.n_rounds)})" if r.n_rounds else f"{int(r.rounds)}"


def _stability(r: Any) -> str:
    return f"unstable: {r.unstable}" if r.unstable else "ok"


def summary_table(df: pd.DataFrame) -> str:
    """Per task config and phase (main batch size): each framework's fastest variant,
    fastest first; each entry's ratio to the one before it, with its interval, and
    entries whose ratio is within noise (the "~" rule) share a rank: a tie."""
    ok = df[(df["status"] == "ok") & df["phase"].isin(STEADY_PHASES)
            & df["interval"].notna() & (df["precision_mode"] == STRICT_PRECISION)]
    rows = []
    width = 0
    for config, part in ok.groupby("config", sort=False):
        main = part[part["batch_size"] == main_batch(part)]
        for phase in STEADY_PHASES:
            here = main[main["phase"] == phase]
            if here.empty:
                continue
            for (device, dtype), where in here.groupby(["device", "dtype"], sort=False):
                best = where.sort_values("median").groupby("backend", sort=False).head(1)
                entries, rank, prev = [], 0, None
                for i, r in enumerate(best.itertuples()):
                    if prev is None:
                        rank, text = 1, ""
                    else:
                        ratio, low, high = ratio_interval(r.interval, prev.interval)
                        if not within_noise(low, high):
                            rank = i + 1
                        text = " " + ratio_text(ratio, low, high)
                    mark = "=" if prev is not None and rank != i + 1 else ""
                    entry = f"{mark}{rank}. {r.impl} {_ms(r.median)} ms{text}"
                    # the fastest, and whatever ties with it, in bold
                    entries.append((f"**{entry}**" if rank == 1 else entry)
                                   + (" (unstable)" if r.unstable else ""))
                    prev = r
                width = max(width, len(entries))
                rows.append([config, phase, f"{device}, {dtype}", *entries])
    if not rows:
        return "_No steady-state cells timed ok in this run._"
    rows = [r + [""] * (3 + width - len(r)) for r in rows]
    return markdown_table(["config", "phase", "device", "fastest",
                           *[f"{n}" for n in ("2nd", "3rd", "4th", "5th", "6th")][:width - 1]],
                          rows)


def _phase_key(col: pd.Series) -> pd.Series:
    if col.name == "phase":
        return col.map({p: i for i, p in enumerate(STEADY_PHASES)})
    return col


def sweep_table(df: pd.DataFrame) -> str:
    step = df[(df["phase"] == "step") & (df["status"] == "ok")]
    if step["batch_size"].nunique() < 2:
        return "_No batch-size sweep in this run._"
    pivot = step.pivot_table(index=["config", "impl"], columns="batch_size",
                             values="samples_per_s", aggfunc="first")
    headers = ["config", "backend/variant", *[f"bs {int(c)} samples/s" for c in pivot.columns]]
    rows = [[c, i, *[_num(v, ",.0f") for v in vals]] for (c, i), vals in
            zip(pivot.index, pivot.to_numpy(), strict=True)]
    return markdown_table(headers, rows)


#: backend -> (primitives variant, the idiomatic variant built from the framework's
#: own layer library) pairs whose timings the abstraction table compares
ABSTRACTION_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "torch": (("eager", "nn"),),
    "jax": (("jit", "flax"),),
    "tensorflow": (("function", "keras_layers"), ("xla", "keras_xla")),
}


def abstraction_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per config, backend, pair and phase (main batch): both medians and their ratio.

    ratio = idiomatic median / primitives median: above 1, the layer library
    costs time; below 1, it is faster than nnparity's primitive ops."""
    ok = df[(df["status"] == "ok") & df["phase"].isin(("forward", "backward", "step"))]
    rows = []
    for (config, backend, dtype, device), part in ok.groupby(
            ["config", "backend", "dtype", "device"], sort=False):
        bs = main_batch(part)
        part = part[part["batch_size"] == bs]
        med = {(r.variant, r.phase): r.median for r in part.itertuples()}
        spans = {(r.variant, r.phase): getattr(r, "interval", None) for r in part.itertuples()}
        for prim, idiom in ABSTRACTION_PAIRS.get(backend, ()):
            for phase in ("forward", "backward", "step"):
                a, b = med.get((prim, phase)), med.get((idiom, phase))
                if a and b:
                    ia, ib = spans.get((prim, phase)), spans.get((idiom, phase))
                    _, low, high = (ratio_interval(ib, ia) if ia is not None and ib is not None
                                    else (None, math.nan, math.nan))
                    rows.append(dict(config=config, backend=backend, dtype=dtype, device=device,
                                     pair=f"{prim} vs {idiom}", phase=phase, batch_size=bs,
                                     primitives=a, idiomatic=b, ratio=b / a, ratio_low=low,
                                     ratio_high=high))
    return pd.DataFrame(rows)


def abstraction_table(df: pd.DataFrame) -> str:
    rows = abstraction_rows(df)
    if rows.empty:
        return "_No run of both a primitives and an idiomatic variant in this run._"
    body = [[r.config, r.backend, r.pair, r.phase, r.dtype, r.device, _ms(r.primitives),
             _ms(r.idiomatic), ratio_text(r.ratio, r.ratio_low, r.ratio_high)]
            for r in rows.itertuples()]
    return markdown_table(["config", "backend", "primitives vs idiomatic", "phase", "dtype",
                           "device", "primitives ms", "idiomatic ms", "idiomatic / primitives"],
                          body)


def agreement_table(df: pd.DataFrame) -> str:
    cells = df[df["phase"].isin(STEADY_PHASES)].drop_duplicates(
        ["config", "impl", "dtype", "device"])
    rows = []
    for r in cells.itertuples():
        if r.grad_passed is None and not r.grad_error:
            continue
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[r.grad_passed]
        if r.grad_verdict:
            verdict = r.grad_verdict if r.grad_passed else f"FAIL ({r.grad_verdict})"
        flips = "n/a" if r.kink_flips is None or pd.isna(r.kink_flips) else f"{int(r.kink_flips)}"
        rows.append([r.config, r.impl, r.dtype, r.device, verdict, _sci(r.grad_err),
                     _sci(r.grad_tol), flips, _sci(r.grad_aligned_err),
                     (r.grad_error or "")[:80]])
    if not rows:
        return "_No gradient-agreement results in this run._"
    return markdown_table(["config", "backend/variant", "dtype", "device", "agreement",
                           "max rel err", "tolerance", "kink flips", "err after mask alignment",
                           "note"], rows)


def _growth(r: Any) -> str:
    """" (+N)": MB the cell's own calls added to what was resident (RSS windows)."""
    value = getattr(r, "memory_growth_bytes", None)
    return "" if value is None or pd.isna(value) else f" (+{value / 1e6:,.0f})"


def memory_table(df: pd.DataFrame) -> str:
    """Peak memory of every step cell against batch size (the sweep)."""
    step = df[(df["phase"] == "step") & (df["status"] == "ok")]
    if step.empty or step["peak_memory_bytes"].isna().all():
        return "_No memory figures in this run._"
    rows = []
    for (config, impl, device, dtype), part in step.groupby(["config", "impl", "device",
                                                              "dtype"], sort=False):
        part = part.sort_values("batch_size")
        rows.append([config, impl, device, dtype,
                     ", ".join(f"{int(r.batch_size)}: {memory_text(r)}" + _growth(r)
                               for r in part.itertuples()),
                     ", ".join(sorted({m for m in part["memory_method"] if m})) or "n/a"])
    return markdown_table(["config", "backend/variant", "device", "dtype",
                           "peak MB by batch size", "method"], rows)


def first_call_table(df: pd.DataFrame) -> str:
    first = df[(df["phase"] == "first_call") & (df["status"] == "ok")]
    steady = df[(df["phase"] == "step") & (df["status"] == "ok")]
    lookup = {(r.config, r.impl, r.device, r.dtype, r.batch_size): r.median
              for r in steady.itertuples()}
    rows = []
    for r in first.itertuples():
        s = lookup.get((r.config, r.impl, r.device, r.dtype, r.batch_size), math.nan)
        startup = getattr(r, "compiler_startup_s", None)
        startup = math.nan if startup is None or pd.isna(startup) else float(startup)
        rows.append([r.config, r.impl, _ms(r.median), _ms(s), _num(r.median / s, ",.0f"),
                     _ms(startup)])
    if not rows:
        return "_No first-call cells in this run._"
    # the compiler's one-time start-up (dynamo/inductor, XLA, TF's first trace) is paid
    # once per process, before the first first_call of a variant, and kept apart from it
    return markdown_table(["config", "backend/variant", "first step ms", "steady step ms",
                           "ratio", "compiler start-up ms (once per process, apart)"], rows)


def calibration_table(df: pd.DataFrame) -> str:
    cal = df[df["phase"] == CALIBRATION]
    rows = []
    for r in cal.itertuples():
        if r.status != "ok":
            rows.append([r.backend, r.device, "error", "", r.error[:80]])
        else:
            rows.append([r.backend, r.device, f"{r.gflops:.1f}", _num(r.gemm_size, ".0f"),
                         str(r.variant)])
    return markdown_table(["backend", "device", "float32 GEMM GFLOP/s", "n", "variant"], rows)


def environment_section(df: pd.DataFrame) -> str:
    machine = df.attrs.get("machine_info", {})
    ours = machine.get("nnparity", {})
    frameworks = ", ".join(f"{k} {v}" for k, v in sorted(ours.get("frameworks", {}).items()))
    v = {k: md_text(ours.get(k, "?")) for k in ("cpu", "cores", "threads", "git_commit",
                                                  "date", "fingerprint")}
    lines = [
        f"- CPU: {v['cpu']} ({v['cores']} cores), threads per framework: {v['threads']}",
        f"- GPU: {md_text(ours.get('gpu') or 'none')}",
        f"- Frameworks: {md_text(frameworks)}",
        f"- Python {md_text(ours.get('python', machine.get('python_version', '?')))}, "
        f"git commit {v['git_commit']}, date {v['date']}",
        f"- Machine fingerprint: {v['fingerprint']}",
    ]
    threads = df.attrs.get("framework_threads") or {}
    if threads:
        parts = [f"{name} {t.get('intra_op', '?')} intra-op / "
                 f"{'-' if t.get('inter_op') is None else t['inter_op']} inter-op"
                 f" ({t.get('inter_op_source', '?')})" for name, t in sorted(threads.items())]
        lines.append("- Threads as run: " + md_text("; ".join(parts)))
    return "\n".join(lines)


def errors_table(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return "_No errors._"
    rows = [[r.cell, r.error[:160]] for r in bad.itertuples()]
    return markdown_table(["cell", "error"], rows)


def flags_table(df: pd.DataFrame) -> str:
    found = flags(df)
    if found.empty:
        return "_No validity flags: every timed cell is below the measured peak, is stable " \
               f"(IQR below {IQR_LIMIT:.0%} of its median, rounds within " \
               f"{ROUNDS_DISAGREE:.0%} of each other), and did not recompile after warm-up._"
    return markdown_table(["cell", "flag"], [[r.cell, r.flag] for r in found.itertuples()])


def headline(df: pd.DataFrame) -> str:
    """The report's opening line: what ran, how much of it is stable, how it was sampled."""
    backends = md_text(", ".join(sorted(b for b in df["backend"].unique() if b)))
    ok = int((df["status"] == "ok").sum())
    preset = md_text(", ".join(sorted({p for p in df["preset"] if p})))
    timed = df[df["interval"].notna()] if "interval" in df else df.iloc[0:0]
    unstable = int((timed["unstable"] != "").sum()) if len(timed) else 0
    text = (f"Preset **{preset}**; backends: {backends}. {ok} of {len(df)} cells timed ok; "
            f"**{unstable} of {len(timed)} timed cells unstable** (IQR >= "
            f"{UNSTABLE_IQR:.0%} of the median, or rounds more than {ROUNDS_DISAGREE:.0%} "
            "apart).")
    if len(timed):
        n, k = timed["rounds"], timed["n_rounds"]
        text += (f" Samples per cell: median {int(n.median())} (min {int(n.min())}, max "
                 f"{int(n.max())}), from {int(k.min())}" + (f"-{int(k.max())}" if k.max() !=
                                                           k.min() else "")
                 + " round(s) (independent worker processes) each.")
    return text


def gaps_table(df: pd.DataFrame) -> str:
    """The variant gaps (bench/report/gaps.py) with their causes, unexplained ones first."""
    gaps = variant_gaps(df)
    if gaps.empty:
        return f"_No variant is more than {GAP_FACTOR:g}x slower than its framework's fastest._"
    gaps = gaps.assign(_known=gaps["cause"] != "").sort_values(
        ["_known", "backend", "config", "phase"], kind="stable")
    rows = [[r.config, r.phase, f"{r.device}, {r.dtype}", r.backend,
             f"{r.variant} vs {r.fastest}", ratio_text(r.ratio, r.low, r.high),
             r.cause or "**unexplained** (no measured cause)"] for r in gaps.itertuples()]
    return markdown_table(["config", "phase", "device", "framework", "variant vs fastest",
                           "ratio [95% CI]", "cause"], rows)


def gaps_headline(df: pd.DataFrame) -> list[str]:
    """A line at the top when a variant gap has no measured cause."""
    gaps = variant_gaps(df)
    lost = unexplained(gaps)
    if lost.empty:
        return []
    return [f"**{len(lost)} of {len(gaps)} variant gaps beyond {GAP_FACTOR:g}x have no "
            "measured cause** (see \"Variant gaps within a framework\"): until measured, "
            "they may show the harness, not the framework."]


def dirty_warning(df: pd.DataFrame) -> list[str]:
    """A run from a modified tree (a commit ending in +dirty) says so at the top."""
    commits = df.attrs.get("commits") or [
        ((df.attrs.get("machine_info") or {}).get("nnparity") or {}).get("git_commit", "")]
    dirty = sorted(c for c in commits if c and str(c).endswith("+dirty"))
    if not dirty:
        return []
    shown = md_text(", ".join(c.removesuffix("+dirty")[:10] + "+dirty" for c in dirty))
    return [f"**Measured from a modified tree** (commit {shown}"
            "): the code that produced these numbers is not any commit; rerun from a clean "
            "checkout before publishing."]


def tuned_note(df: pd.DataFrame) -> list[str]:
    """A tuned run (`run --settings`) says so at the top, with each framework's setting:
    its numbers are not the defaults a user gets."""
    tuned = dict(df.attrs.get("settings") or {})
    source = tuned.pop("source", "")
    tuned = {b: s for b, s in tuned.items() if s != "default"}
    if not tuned:
        return []
    which = ", ".join(f"{md_text(b)} `{md_text(s)}`" for b, s in sorted(tuned.items()))
    return [f"**Tuned run**: each framework ran with one speed setting ({which}; "
            f"{md_text(source) or 'named'}), recorded per cell; a default run is what users "
            "get without it. `nnparity compare DEFAULT_RUN THIS_RUN` gives each cell's "
            "speed-up with its interval."]


#: others' CPU share during a group, or the 1-minute load per core at the run's
#: start, above which the report warns that the machine was busy
BUSY_SHARE = 0.10
BUSY_LOAD_PER_CORE = 0.5


def busy_warning(df: pd.DataFrame) -> list[str]:
    """A warning when other processes used the machine during the run (as Google
    Benchmark warns about CPU frequency scaling): their CPU share while a group ran
    above 10% of the cores, or a 1-minute load average of at least half the cores
    when the run started."""
    loads = df.attrs.get("machine_load") or {}
    if not loads:
        return []
    shares = {g: v.get("others_cpu_share") for g, v in loads.items()
              if isinstance(v.get("others_cpu_share"), int | float)}
    cores = max([int(v.get("cores") or 1) for v in loads.values()] or [1])
    start = next((v.get("loadavg_run_start") for v in loads.values()
                  if v.get("loadavg_run_start")), None)
    busy = {g: s for g, s in shares.items() if s > BUSY_SHARE}
    loaded = bool(start) and start[0] >= BUSY_LOAD_PER_CORE * cores
    worst = max(shares.values()) if shares else None
    facts = (f"other processes used up to {worst:.0%} of the {cores} cores while a group "
             f"ran ({len(busy)} of {len(shares)} groups above {BUSY_SHARE:.0%})"
             if worst is not None else "")
    if start:
        facts += ("; " if facts else "") + (f"1-minute load average {start[0]:g} when the "
                                             f"run started")
    if not busy and not loaded:
        return [f"Machine state: {facts} (quiet)."] if facts else []
    return [f"**The machine was busy during this run**: {facts}. Timings from a shared "
            "machine move with the neighbours' load; rerun on an idle one before trusting "
            "small differences."]


def render(df: pd.DataFrame, figures: list[str]) -> str:
    parts = [
        "# nnparity benchmark report",
        headline(df),
        *tuned_note(df),
        *dirty_warning(df),
        *gaps_headline(df),
        *busy_warning(df),
        *_environment_warning(df),
        "## Summary: frameworks ranked per task and phase",
        "Each framework's fastest variant (strict fp32), fastest first, at each config's main "
        "batch size; "
        "after each entry its median ratio to the entry before it with the 95% interval. "
        "Entries within noise of the one before them (\"~\") share its rank (\"=\"): a "
        "tie. The fastest, and any tied with it, in bold.",
        summary_table(df),
        "## How to read the numbers",
        "Times are the median of all timed samples of a cell (warm-up excluded, each call "
        "synchronised); `95% CI ms` is the median's interval; `samples (rounds)` how many "
        "timed calls and worker processes it rests on; IQR is relative to the median; "
        "`% of device peak` is achieved model FLOP/s over the best float32 GEMM rate any "
        "framework reached on that device (one yardstick for every row); `% of own GEMM` "
        "over this framework's own best GEMM; `vs NumPy` is the NumPy reference's median "
        "divided by this one (above 1: faster than NumPy). " + RULE_TEXT,
        "## Timings by task",
        *timing_tables(df),
        "## Throughput against batch size (step, samples/s)",
        sweep_table(df),
        "## The cost of abstraction: primitive ops against the framework's layer library",
        "Each framework's primitives variant (nnparity's own ops) against its idiomatic "
        "variant (torch.nn modules, Flax linen, Keras layers; same canonical parameters, "
        "same agreement checks), at each config's main batch size. Ratio above 1: the "
        "layer library is slower. The harness's own cost (its timing of a call against a "
        "bare perf_counter loop around the same call) is measured by "
        "`python -m bench.timing.overhead --backends all`.",
        abstraction_table(df),
        "## Variant gaps within a framework",
        f"Every variant more than {GAP_FACTOR:g}x slower than its framework's fastest variant "
        "in the same cell (steady phases, main batch size, the ratio's interval outside the "
        "noise band), with its measured cause. A gap without one is **unexplained**: it may "
        "measure the harness rather than the framework, and is not a finding until its cause "
        "is measured (bench/report/gaps.py holds the causes, docs/design.md §5 the "
        "measurements).",
        gaps_table(df),
        "## Gradient agreement with the float64 NumPy reference",
        "Tolerances scale with the problem (bench/agreement/tolerances.py). A kink flip is a "
        "ReLU unit or max-pool window whose mask differs from the reference's; where there "
        "are any, the reference is recomputed on the backend's masks, and a tensor that "
        "agrees with that one passes (\"agrees, N kink flips\").",
        agreement_table(df),
        "## Precision modes: speed-up over strict fp32 against error",
        PRECISION_INTRO,
        precision_table(df),
        "## Peak memory per cell (step, against batch size)",
        MEMORY_LEGEND,
        memory_table(df),
        "## First call (trace/compile) against steady state",
        first_call_table(df),
        "## Calibration: measured float32 GEMM peak",
        calibration_table(df),
        "## Validity flags",
        flags_table(df),
        "## Errors",
        errors_table(df),
        "## Figures",
        *[f"![{Path(f).stem}]({Path(f).name})" for f in figures],
        "## Environment",
        environment_section(df),
    ]
    return "\n\n".join(parts) + "\n"


def _environment_warning(df: pd.DataFrame) -> list[str]:
    """Above the numbers: what differs when the files come from different environments."""
    from bench.results.envdiff import environment_differences

    lines = environment_differences(df)
    if not lines:
        return []
    return ["**These results come from different environments.** What differs:\n\n"
            + "\n".join(f"- {md_text(line)}" for line in lines)]


PRECISION_INTRO = (
    "Each float32 cell in each precision mode: `step ms` its median; `forward x`, "
    "`backward x`, `step x` the strict fp32 cell's median over this one's (above 1: the "
    "mode is faster); `loss err` and `grad err` (worst gradient tensor) the normwise "
    "relative error against the float64 NumPy reference on the same parameters and batch, "
    "the loss trajectory error over N optimiser steps likewise. Strict fp32 and fp64 are "
    "gated by the agreement check; reduced modes are measured, compared with the expected "
    "range stated in `bench/agreement/tolerances.py`, and flagged (never failed) outside it. "
    "n/a: the backend does not offer the mode on that device (e.g. NumPy has no bfloat16, "
    "TF32 and fp16 are GPU modes).")
