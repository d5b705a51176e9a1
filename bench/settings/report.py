"""SETTINGS.md and settings.png: each setting's speed-up over the default, with its
interval, the "~ within noise" mark and the agreement verdict, per framework and cell,
and each framework's best safe setting (`bench.settings.analysis`).

Reads only a validated document (`bench.settings.results.load`); every text from it
is escaped into Markdown (`bench.results.escape.md_text`), and the figure is written
atomically under a fixed name inside the sweep directory. Imports no framework.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.results.escape import md_text
from bench.results.stats import NOISE_BAND
from bench.results.write import write_atomic, write_text_atomic
from bench.settings.analysis import (
    DEFAULT,
    Best,
    Ranked,
    Row,
    best_in_cell,
    best_per_backend,
    ranking,
    rows,
    tuned,
)

REPORT = "SETTINGS.md"
FIGURE = "settings.png"


def _ms(seconds: float) -> str:
    return "n/a" if not math.isfinite(seconds) else f"{seconds * 1e3:.3g}"


def _speedup(r: Row) -> str:
    if r.setting == DEFAULT:
        return "1 (baseline)"
    if not math.isfinite(r.speedup):
        return "n/a"
    mark = "~" if r.noise else ""
    return f"{mark}{r.speedup:.3g}x [{r.low:.3g}, {r.high:.3g}]"


def _cell_title(r: Row) -> str:
    return f"{r.task} {r.phase}"


def render(doc: dict[str, Any], figure: str | None = None) -> str:
    all_rows = rows(doc["items"])
    best = best_per_backend(all_rows)
    what = {k: v.get("what", "") for k, v in doc["settings"].items()}
    blas = {i["id"]: i["blas"] for i in doc["items"] if i.get("blas")}
    machine = doc.get("machine", {})
    lines = [
        "# Speed settings, one at a time",
        "",
        f"Preset {md_text(doc['preset'])}, {doc['rounds']} round(s) of independent worker "
        f"processes in a recorded random order, {doc['budget_s']:g} s timed per item; "
        f"{md_text(machine.get('cpu', '?'))}, {doc.get('cores', 0)} cores; took "
        f"{doc['elapsed_s'] / 60:.1f} min ({doc.get('cpu_s', 0.0) / 60:.1f} CPU-min in the "
        "worker processes)." + (f" {md_text(doc['stopped'])}." if doc.get("stopped") else ""),
        "",
        "Speed-up = median(default) / median(setting) (above 1: faster) with its 95% "
        "interval (hierarchical bootstrap over rounds, then samples). `~`: the interval "
        f"reaches into the +-{NOISE_BAND:.0%} noise band, not a difference. Agreement: the "
        "setting's loss, output and gradients against the float64 reference with "
        "gradcheck's tolerances; a setting that does not agree is never safe, however fast.",
        "",
        "## Best safe setting per framework",
        "",
        "| framework | best safe setting | geometric-mean speed-up | why |",
        "|---|---|---|---|",
    ]
    for backend, b in best.items():
        shown = "default" if b.setting == DEFAULT else f"`{md_text(b.setting)}`"
        geo = f"{b.geomean:.2f}x over {b.cells} cell(s)" if b.cells else "-"
        lines.append(f"| {md_text(backend)} | {shown} | {geo} | {md_text(b.why)} |")
    failing = [r for r in all_rows if r.setting != DEFAULT and not r.safe
               and r.verdict != "not checked"]
    if failing:
        lines += ["", "Settings that fail agreement (never safe): " + ", ".join(
            sorted({f"{md_text(r.backend)} `{md_text(r.setting)}`" for r in failing})) + "."]
    lines += _tuned_section(all_rows, best)
    if figure:
        lines += ["", f"![speed-up per setting]({figure})"]
    by_backend: dict[str, dict[str, list[Row]]] = {}
    for r in all_rows:
        by_backend.setdefault(r.backend, {}).setdefault(r.cell, []).append(r)
    for backend, cells in sorted(by_backend.items()):
        lines += ["", f"## {md_text(backend)}"]
        for cell, rs in cells.items():
            top = best_in_cell(rs)
            lines += ["", f"### {md_text(_cell_title(rs[0]))}", "",
                      f"`{md_text(cell)}`; best safe here: "
                      + (f"`{md_text(top.setting)}` ({top.speedup:.2f}x)" if top
                         else "none faster beyond noise") + ".", "",
                      "| setting | what it toggles | median ms | speed-up [95% CI] | agreement |",
                      "|---|---|---|---|---|"]
            for r in rs:
                verdict = md_text(r.verdict) if r.safe or r.verdict == "not checked" \
                    else f"**{md_text(r.verdict)}**"
                if r.check_error:
                    verdict += f" (check failed: {md_text(r.check_error[:160])})"
                note = f" ({md_text(r.error[:160])})" if r.error else ""
                kernel = blas.get(f"{r.cell}@{r.setting}", "")
                toggles = what.get(f"{backend}:{r.setting}", "") + (
                    f" (BLAS ran: {kernel})" if kernel else "")
                lines.append(f"| `{md_text(r.setting)}` | {md_text(toggles.strip())} | "
                             f"{_ms(r.median_s)}{note} | {_speedup(r)} | {verdict} |")
        na = [n for n in doc["not_applicable"] if n["backend"] == backend]
        if na:
            reasons: dict[tuple[str, str], int] = {}
            for n in na:
                key = (n["setting"], n["why"])
                reasons[key] = reasons.get(key, 0) + 1
            lines += ["", "n/a here: " + "; ".join(
                f"`{md_text(s)}` ({md_text(w)}, {c} cell(s))"
                for (s, w), c in sorted(reasons.items())) + "."]
    return "\n".join(lines) + "\n"


def _ranking_text(ranked: list[Ranked]) -> str:
    text = ""
    for i, r in enumerate(ranked):
        if i:
            text += " ~ " if r.tie else " < "
        text += md_text(r.backend)
    return text


def _tuned_section(all_rows: Sequence[Row], best: dict[str, Best]) -> list[str]:
    """"Defaults and tuned": each framework's default beside its best safe setting, per
    workload, and the frameworks ranked both ways (`analysis.tuned`, `analysis.ranking`)."""
    table = tuned(all_rows, best)
    if not table:
        return []
    lines = ["", "## Defaults and tuned", "",
             "Each framework's default against the same workload with its best safe setting "
             "(above; the default where that setting does not apply to the workload), both "
             "measured in this sweep, interleaved. Ranking: fastest first; `~` joins two "
             "frameworks whose ratio is within noise (a tie), `<` one that is faster beyond "
             "noise.", "",
             "| workload | framework | default ms | tuned with | tuned ms | speed-up [95% CI] |",
             "|---|---|---|---|---|---|"]
    rankings = []
    for work, entries in table.items():
        for t in entries:
            same = t.tuned is t.default
            lines.append(
                f"| `{md_text(work)}` | {md_text(t.backend)} | {_ms(t.default.median_s)} | "
                + ("default" if same else f"`{md_text(t.setting)}`") + f" | "
                f"{_ms(t.tuned.median_s)} | " + ("-" if same else _speedup(t.tuned)) + " |")
        default_rank = ranking((t.backend, t.default.interval) for t in entries)
        tuned_rank = ranking((t.backend, t.tuned.interval) for t in entries)
        rankings.append(f"| `{md_text(work)}` | {_ranking_text(default_rank)} | "
                        f"{_ranking_text(tuned_rank)} |")
    lines += ["", "| workload | ranking with defaults | ranking tuned |", "|---|---|---|",
              *rankings]
    return lines


def draw(all_rows: Sequence[Row], best: dict[str, Best], path: Path) -> bool:
    """One panel per framework: each setting's speed-up with its interval, per cell;
    red where it fails agreement, grey within noise. False when there is nothing to draw."""
    shown = [r for r in all_rows if r.setting != DEFAULT and math.isfinite(r.speedup)]
    if not shown:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = sorted({r.backend for r in shown})
    heights = [max(1.5, 0.28 * sum(r.backend == b for r in shown) + 0.8) for b in backends]
    fig, axes = plt.subplots(len(backends), 1, figsize=(8, sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, backend in zip(axes[:, 0], backends, strict=True):
        rs = [r for r in shown if r.backend == backend]
        labels = [f"{r.task} {r.phase}: {r.setting}" for r in rs]
        for y, r in enumerate(rs):
            color = "tab:red" if not r.safe else ("0.6" if r.noise else "tab:blue")
            ax.errorbar(r.speedup, y, xerr=[[max(r.speedup - r.low, 0)],
                                            [max(r.high - r.speedup, 0)]],
                        fmt="o", color=color, ms=4, capsize=2)
        ax.axvspan(1 / (1 + NOISE_BAND), 1 + NOISE_BAND, color="0.9", zorder=0)
        ax.axvline(1.0, color="0.4", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(range(len(rs)), labels, fontsize=7)
        ax.invert_yaxis()
        b = best.get(backend)
        ax.set_title(f"{backend}: best safe = {b.setting if b else DEFAULT}", fontsize=9)
    axes[-1, 0].set_xlabel("speed-up over the default, 95% interval (log scale)\n"
                           "blue: beyond noise; grey: ~ within noise; red: fails agreement",
                           fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110), root=path.parent)
    plt.close(fig)
    return True


def write_report(out: Path, doc: dict[str, Any]) -> Path:
    """SETTINGS.md (and settings.png) in the sweep directory `out`, from a validated doc."""
    out = Path(out)
    all_rows = rows(doc["items"])
    drawn = draw(all_rows, best_per_backend(all_rows), out / FIGURE)
    path = out / REPORT
    write_text_atomic(path, render(doc, FIGURE if drawn else None))
    return path
