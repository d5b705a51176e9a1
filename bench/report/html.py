"""`nnparity report RUN_DIR --html`: one self-contained, interactive REPORT.html.

Built from the same tidy table as REPORT.md (`bench.report.markdown.tidy`) and
holding the same text and tables (REPORT.md's Markdown, rendered here), plus
Plotly charts: per task, step time against batch size with one trace per
backend/variant (legend clicks hide a variant, the backend boxes above the
charts hide a backend's traces in every chart; each (framework, variant) has
its own shade of its framework's hue and its own marker and dash, the same in
every chart: `bench.report.plots.variant_styles`); the gradient-agreement heat
map on a log colour scale clipped to the run's own range, so one far-off
backend does not wash out the others; first call against steady state. Every
point's hover shows the cell id, median, IQR, samples, FLOP/s, % of peak,
memory and agreement. The page opens like REPORT.md, with the headline and the
ranked summary (every table sorts by a click on its header; the summary's
fastest entries are highlighted, ties marked). Plotly's script is inlined, so
the file opens offline.

Plotly is an optional extra (`pip install nnparity[html]`); without it the
command says so in one line. This module reads the run through the report's
loader, never times anything and never imports a framework.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.options import InputError
from bench.report.markdown import render, tidy
from bench.report.plots import run_styles
from bench.results.escape import md_unescape
from bench.results.read import load_run
from bench.results.schema import STEADY_PHASES
from bench.results.text import number
from bench.results.write import write_text_atomic

HOVER = ("%{customdata[0]}<br>median %{customdata[1]}<br>IQR %{customdata[2]}"
         "<br>samples %{customdata[3]}<br>FLOP/s %{customdata[4]}<br>% of peak %{customdata[5]}"
         "<br>memory %{customdata[6]}<br>agreement %{customdata[7]}<extra></extra>")


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise InputError("--html needs plotly: pip install 'nnparity[html]'") from None
    return go, get_plotlyjs


# -- hover text -------------------------------------------------------------------------------

def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return number(value, spec, suffix)


def _bytes(value: Any) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    return f"{float(value) / 2**20:,.1f} MiB"


def _agreement(r: Any) -> str:
    if r.grad_passed is None or pd.isna(r.grad_passed):
        return "n/a"
    verdict = "pass" if r.grad_passed else "FAIL"
    return f"{verdict} (max rel err {_fmt(r.grad_err, '.1e')}, tol {_fmt(r.grad_tol, '.0e')})"


def hover_data(r: Any) -> list[str]:
    """The eight hover fields of one tidy row, in HOVER's order."""
    return [r.cell, _fmt(r.median * 1e3, ".4g", " ms"), _fmt(r.iqr_rel, ".1%"),
            str(int(r.rounds)), _fmt(r.flops_per_s / 1e9 if not pd.isna(r.flops_per_s)
                                     else math.nan, ",.2f", " GFLOP/s"),
            _fmt(r.pct_peak, ".3g", "%"),
            _bytes(r.peak_memory_bytes) + (f" ({r.memory_source})" if r.memory_source else ""),
            _agreement(r)]


def _trace_name(r: Any, multi: bool) -> str:
    return f"{r.impl} ({r.device}, {r.dtype})" if multi else r.impl


# -- charts -------------------------------------------------------------------------------------

def sweep_figures(df: pd.DataFrame, go: Any) -> list[tuple[str, Any]]:
    """Per task config: step median against batch size, one trace per backend/variant."""
    ok = df[(df["status"] == "ok") & (df["phase"] == "step")].copy()
    multi = ok[["device", "dtype"]].drop_duplicates().shape[0] > 1
    styles = run_styles(df)
    out = []
    for config, part in ok.groupby("config", sort=True):
        fig = go.Figure()
        for key, line in part.groupby(["impl", "device", "dtype"], sort=True):
            line = line.sort_values("batch_size")
            first = next(line.itertuples())
            backend = str(first.backend)
            st = styles[key[0]]
            fig.add_trace(go.Scatter(
                x=line["batch_size"].astype(float), y=line["median"] * 1e3,
                mode="lines+markers", name=_trace_name(first, multi),
                legendgroup=backend, legendgrouptitle_text=backend,
                meta={"backend": backend, "impl": key[0]},
                line={"color": st.colour, "dash": st.plotly_dash},
                marker={"color": st.colour, "symbol": st.plotly_marker, "size": 8},
                error_y={"type": "data", "symmetric": False,
                         "array": (line["q3"] - line["median"]).clip(lower=0) * 1e3,
                         "arrayminus": (line["median"] - line["q1"]).clip(lower=0) * 1e3,
                         "thickness": 1},
                customdata=[hover_data(r) for r in line.itertuples()], hovertemplate=HOVER))
        fig.update_layout(title=f"{config}: training step time against batch size",
                          xaxis={"title": "batch size", "type": "log"},
                          yaxis={"title": "median step time (ms), bars: IQR", "type": "log"},
                          legend={"groupclick": "toggleitem"}, hovermode="closest",
                          height=420, margin={"t": 50, "b": 40})
        out.append((f"sweep-{slug(config)}", fig))
    return out


def agreement_range(errors: np.ndarray) -> tuple[float, float]:
    """Log10 colour range of the max relative errors: the 5th to 95th percentile of the
    non-zero ones, widened to at least one decade, so one far-off backend saturates
    the top colour instead of squeezing every other cell into the bottom one."""
    finite = errors[np.isfinite(errors) & (errors > 0)]
    if not len(finite):
        return -16.0, 0.0
    logs = np.log10(finite)
    lo, hi = float(np.floor(np.percentile(logs, 5))), float(np.ceil(np.percentile(logs, 95)))
    return (lo, max(hi, lo + 1))


def agreement_figure(df: pd.DataFrame, go: Any) -> Any | None:
    cells = df[df["phase"].isin(STEADY_PHASES) & df["grad_err"].notna()].drop_duplicates(
        ["config", "impl", "dtype", "device"])
    if cells.empty:
        return None
    cells = cells.assign(col=cells["config"] + " " + cells["dtype"])
    rows, cols = sorted(cells["impl"].unique()), sorted(cells["col"].unique())
    err = np.full((len(rows), len(cols)), np.nan)
    hover = np.full((len(rows), len(cols)), "", dtype=object)
    for r in cells.itertuples():
        i, j = rows.index(r.impl), cols.index(r.col)
        err[i, j] = float(r.grad_err)
        hover[i, j] = (f"{r.cell}<br>max rel err {_fmt(float(r.grad_err), '.2e')}<br>"
                       f"tolerance {_fmt(r.grad_tol, '.0e')}<br>agreement {_agreement(r)}")
    lo, hi = agreement_range(err)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.clip(np.log10(np.where(err > 0, err, 10.0**lo)), lo, hi)
    z = np.where(np.isnan(err), np.nan, z)
    ticks = list(range(int(lo), int(hi) + 1))
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=rows, colorscale="Viridis", zmin=lo, zmax=hi, customdata=hover,
        hovertemplate="%{customdata}<extra></extra>",
        colorbar={"title": "max rel err", "tickvals": ticks,
                  "ticktext": [f"{'≤' if t == ticks[0] else '≥' if t == ticks[-1] else ''}"
                               f"1e{t}" for t in ticks]}))
    fig.update_layout(title="Gradient agreement with the float64 NumPy reference "
                            "(log colour scale, clipped to this run's 5th-95th percentile)",
                      height=120 + 40 * len(rows), margin={"t": 60, "l": 160},
                      xaxis={"tickangle": -30})
    return fig


def first_call_figure(df: pd.DataFrame, go: Any) -> Any | None:
    """First call against steady step, log-log, one trace per backend/variant."""
    first = df[(df["phase"] == "first_call") & (df["status"] == "ok")]
    steady = df[(df["phase"] == "step") & (df["status"] == "ok")]
    lookup = {(r.config, r.impl, r.device, r.dtype, r.batch_size): r.median
              for r in steady.itertuples()}
    styles = run_styles(df)
    fig = go.Figure()
    for impl, part in first.groupby("impl", sort=True):
        xs, ys, data = [], [], []
        for r in part.itertuples():
            s = lookup.get((r.config, r.impl, r.device, r.dtype, r.batch_size))
            if s is None:
                continue
            xs.append(s * 1e3)
            ys.append(r.median * 1e3)
            data.append([*hover_data(r), f"{r.median / s:,.0f}x the steady step"])
        if not xs:
            continue
        backend = str(part["backend"].iloc[0])
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name=impl, legendgroup=backend,
            legendgrouptitle_text=backend, meta={"backend": backend, "impl": impl},
            marker={"color": styles[impl].colour, "symbol": styles[impl].plotly_marker,
                    "size": 10, "line": {"width": 1, "color": "#333333"}}, customdata=data,
            hovertemplate=HOVER.replace("<extra>", "<br>%{customdata[8]}<extra>")))
    if not fig.data:
        return None
    fig.update_layout(title="First call (trace/compile) against steady-state step",
                      xaxis={"title": "steady step median (ms)", "type": "log"},
                      yaxis={"title": "first call (ms)", "type": "log"},
                      legend={"groupclick": "toggleitem"}, height=450)
    return fig


# -- the page -----------------------------------------------------------------------------------

def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _inline(text: str) -> str:
    """Markdown inline marks REPORT.md uses: `code`, **bold**, _emphasis_. What
    `md_text` escaped for Markdown is unescaped first, then escaped for HTML."""
    out = html.escape(md_unescape(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"(?<!\w)_([^_]+)_(?!\w)", r"<i>\1</i>", out)


_RANKED = re.compile(r"^(\*\*)?(=?)(\d+)\. \S+ ([\d,.]+) ms")


def _cell_attrs(cell: str) -> str:
    """The summary's entries ("**1. torch/eager 0.81 ms**", "=2. jax/jit 0.82 ms ~1.01x
    [...]"): the fastest (bold) highlighted, a tie marked, and sorted by their time."""
    m = _RANKED.match(md_unescape(cell))
    if not m:
        return ""
    classes = (["best"] if m.group(1) else []) + (["tie"] if m.group(2) else [])
    key = float(m.group(4).replace(",", ""))
    title = ' title="tied: within noise of the entry before it"' if m.group(2) else ""
    return (f' data-key="{key:g}"' + (f' class="{" ".join(classes)}"' if classes else "")
            + title)


def markdown_to_html(text: str) -> str:
    """REPORT.md's Markdown (headings, paragraphs, pipe tables, lists) as HTML; image
    lines are dropped (the charts replace the PNGs)."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(line.startswith("|") for line in lines) and len(lines) >= 2:
            cells = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
            # the separator row may be written with or without spaces ("|---|---|")
            align = ["right" if a.strip().endswith(":") else "left"
                     for a in lines[1].strip().strip("|").split("|")]
            head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
            body = "".join(
                "<tr>" + "".join(f'<td style="text-align:{a}"{_cell_attrs(c)}>{_inline(c)}</td>'
                                 for c, a in zip(row, align, strict=False)) + "</tr>"
                for row in cells[2:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif lines[0].startswith("#"):
            level = len(lines[0]) - len(lines[0].lstrip("#"))
            title = lines[0][level:].strip()
            out.append(f'<h{level} id="{slug(title)}">{_inline(title)}</h{level}>')
        elif all(line.startswith("- ") for line in lines):
            out.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
                       + "</ul>")
        elif all(line.startswith("![") for line in lines):
            continue
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out)


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.2em .6em}th{background:#f3f3f3}
code{background:#f3f3f3;padding:0 .2em}.chart{margin:1em 0 2em}
td.best{background:#e3f4e1}td.tie{box-shadow:inset 3px 0 #f0ad4e}
#toggles{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;
z-index:10}#toggles label{margin-right:1.2em}
"""

# Backend boxes restyle every chart: a trace whose meta.backend is unticked is hidden.
_SCRIPT = r"""
function nnparityToggle(){
  var off = {};
  document.querySelectorAll('#toggles input').forEach(function(b){off[b.value]=!b.checked;});
  document.querySelectorAll('.chart .plotly-graph-div').forEach(function(gd){
    var idx = [], vis = [];
    (gd.data||[]).forEach(function(t,i){
      if(t.meta && t.meta.backend !== undefined){
        idx.push(i); vis.push(off[t.meta.backend] ? false : true);
      }
    });
    if(idx.length){Plotly.restyle(gd, {visible: vis}, idx);}
  });
}
document.querySelectorAll('#toggles input').forEach(function(b){
  b.addEventListener('change', nnparityToggle);
});
"""

#: every table of a page sorts by a click on its header (the race's page uses it too)
SORT_SCRIPT = r"""
// every table sorts by a click on its header (numbers by value, "n/a" last)
function nnparityKey(text){
  var m = text.replace(/[,~=]/g,'').match(/-?\d+(\.\d+)?(e-?\d+)?/);
  return m ? parseFloat(m[0]) : null;
}
document.querySelectorAll('table').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.style.cursor = 'pointer'; th.title = 'sort';
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.dataset.dir !== 'up'; th.dataset.dir = up ? 'up' : 'down';
      rows.sort(function(a, b){
        var ca = a.cells[col], cb = b.cells[col];
        var x = ca ? ca.textContent : '', y = cb ? cb.textContent : '';
        // a cell's own sort key (the summary's entries: their time) before its text
        var kx = ca && ca.dataset.key ? parseFloat(ca.dataset.key) : nnparityKey(x);
        var ky = cb && cb.dataset.key ? parseFloat(cb.dataset.key) : nnparityKey(y), r;
        if(kx !== null && ky !== null){ r = kx - ky; }
        else if(kx !== null || ky !== null){ r = kx === null ? 1 : -1; }
        else { r = x.localeCompare(y); }
        return up ? r : -r;
      });
      rows.forEach(function(row){ body.appendChild(row); });
    });
  });
});
"""


def render_html(df: pd.DataFrame) -> str:
    """The page: REPORT.md's title, backend toggles, the charts, then REPORT.md's content
    (environment differences included, above the numbers)."""
    go, get_plotlyjs = _plotly()
    charts: list[tuple[str, str, Any]] = []
    for div, fig in sweep_figures(df, go):
        charts.append(("Time against batch size", div, fig))
    for title, div, make in (("Gradient agreement", "agreement", agreement_figure),
                             ("First call against steady state", "first-call",
                              first_call_figure)):
        fig = make(df, go)
        if fig is not None:
            charts.append((title, div, fig))
    backends = sorted(b for b in df["backend"].unique() if b)
    toggles = "".join(f'<label><input type="checkbox" value="{html.escape(b)}" checked> '
                      f"{html.escape(b)}</label>" for b in backends)
    parts = []
    last = None
    for title, div, fig in charts:
        if title != last:
            parts.append(f"<h3>{html.escape(title)}</h3>")
            last = title
        body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div,
                           config={"displaylogo": False, "responsive": True})
        parts.append(f'<div class="chart">{body}</div>')
    report = markdown_to_html(render(df, []))
    title, _, rest = report.partition("\n")
    # the page opens like REPORT.md: the headline and the ranked summary, then the charts
    summary, mark, rest = rest.partition('<h2 id="how-to-read-the-numbers">')
    summary, rest = (summary, mark + rest) if mark else ("", summary)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>nnparity benchmark report</title>"
        f"<style>{STYLE}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>\n"
        f"{title}\n{summary}\n"
        f'<div id="toggles"><b>backends:</b> {toggles} '
        "<small>(legend entries hide one variant; double-click a legend entry to isolate "
        "it)</small></div>\n"
        f"<h2 id=\"interactive-figures\">Interactive figures</h2>\n{''.join(parts)}\n"
        f"{rest}\n<script>{_SCRIPT}{SORT_SCRIPT}</script>\n</body></html>\n")


def write_html(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    df = tidy(load_run(run))
    out = run / "REPORT.html"
    write_text_atomic(out, render_html(df))
    return out
