"""The race's own interactive page, REPORT.html, beside its REPORT.md.

The race is a run of its own (`race.json`, not a benchmark run directory), so it
gets its own page rather than a section of the benchmark's REPORT.html: the race
library sits above `bench.report` (docs/design.md §1) and draws on its HTML
pieces (the Markdown renderer, the style and sortable tables, each variant's
colour, marker and shade), while the benchmark report never reads a race. The
page holds REPORT.md's text and tables (time to target with its interval, steps
to target with its range, cold time, start-up, compile, evaluation's share)
and, per task, one Plotly figure: time to target (warm and cold, whiskers: the
seeds kept) beside steps to target (whiskers: every seed that reached it).

Everything comes from `race.json` through `bench.race.report.load` (validated
as untrusted input) and goes out escaped: text through the renderer's HTML
escaping, figure data as JSON. Needs plotly (the `html` extra); `write_html`
returns None without it. Imports no framework.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.race.report import entries, head, label, load, task_table
from bench.report.html import SORT_SCRIPT, STYLE, markdown_to_html, slug
from bench.report.plots import WIDE, variant_styles
from bench.results.write import write_text_atomic

PAGE = "REPORT.html"


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
        from plotly.subplots import make_subplots
    except ImportError:
        return None
    return go, get_plotlyjs, make_subplots


def _markdown(lines: list[str]) -> str:
    """The race's Markdown as HTML; a list item wrapped over several lines is one item."""
    out: list[str] = []
    for line in "\n".join(lines).splitlines():
        if out and line.startswith("  ") and out[-1].startswith("- "):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return markdown_to_html("\n".join(out))


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def task_figure(task: str, scores: dict, plotly: Any) -> Any | None:
    """Time to target (warm, cold) beside steps to target, one row per scored entry."""
    go, _, make_subplots = plotly
    shown = {k: s for k, s in scores.items() if math.isfinite(s.warm.mean)}
    if not shown:
        return None
    styles = variant_styles(f"{b}/{v}" for b, v, _, _ in shown)
    names = [label(k) for k in shown]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("time to target (s)", "steps to target"))
    for k, s in shown.items():
        impl = f"{k[0]}/{k[1]}"
        st, name = styles[impl], label(k)
        meta = {"backend": k[0], "impl": impl, "entry": name}
        hover = (f"{name}<br>warm {s.warm.mean:.3g} s [{s.warm.low:.3g}, {s.warm.high:.3g}]"
                 f"<br>cold {s.cold.mean:.3g} s<br>steps {s.steps.mean:.0f} "
                 f"({s.steps_min}-{s.steps_max})<br>seeds missed {s.failed}/{s.seeds}")
        for part, o, opacity in (("warm", s.warm, 1.0), ("cold", s.cold, 0.45)):
            if _finite(o.mean) is None:
                continue
            fig.add_trace(go.Bar(
                x=[o.mean], y=[name], orientation="h",
                name=name if part == "warm" else f"{name} cold", offsetgroup=part,
                legendgroup=name, showlegend=part == "warm", meta={**meta, "part": part},
                marker={"color": st.colour, "opacity": opacity,
                        "pattern": {"shape": "" if part == "warm" else "/"}},
                error_x={"type": "data", "symmetric": False, "array": [o.high - o.mean],
                         "arrayminus": [o.mean - o.low], "thickness": 1},
                hovertext=[hover + f"<br>({part})"], hoverinfo="text"), row=1, col=1)
        if _finite(s.steps.mean) is not None and s.steps_min is not None:
            fig.add_trace(go.Scatter(
                x=[s.steps.mean], y=[name], mode="markers", name=f"{name} steps",
                legendgroup=name, showlegend=False, meta={**meta, "part": "steps"},
                marker={"color": st.colour, "symbol": st.plotly_marker, "size": 11},
                error_x={"type": "data", "symmetric": False,
                         "array": [s.steps_max - s.steps.mean],
                         "arrayminus": [s.steps.mean - s.steps_min], "thickness": 1},
                hovertext=[hover], hoverinfo="text"), row=1, col=2)
    times = [v for s in shown.values() for v in (s.warm.mean, s.cold.mean)
             if _finite(v) is not None and v > 0]
    if times and max(times) / min(times) > WIDE:  # warm and cold decades apart: log axis
        fig.update_xaxes(type="log", row=1, col=1)
    fig.update_layout(title=f"{task}: time to target (solid: warm; hatched: cold, with "
                            "start-up and compile) and steps to target; whiskers: the seeds",
                      barmode="group", height=160 + 60 * len(names),
                      yaxis={"autorange": "reversed", "categoryorder": "array",
                             "categoryarray": names},
                      legend={"title": {"text": "backend variant dtype"}},
                      margin={"t": 80, "l": 220})
    return fig


def render_html(doc: dict[str, Any], plotly: Any) -> str:
    go, get_plotlyjs, _ = plotly
    parts = [_markdown(head(doc))]
    for task in doc["tasks"]:
        scores = entries(doc, task)
        if not scores:
            continue
        parts.append(_markdown(task_table(doc, task, scores)))
        fig = task_figure(task, scores, plotly)
        if fig is not None:
            body = fig.to_html(full_html=False, include_plotlyjs=False,
                               div_id=f"race-{slug(task)}",
                               config={"displaylogo": False, "responsive": True})
            parts.append(f'<div class="chart">{body}</div>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>nnparity race: time to a trained model</title>"
            f"<style>{STYLE}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>\n"
            + "\n".join(parts) + f"\n<script>{SORT_SCRIPT}</script>\n</body></html>\n")


def write_html(out: Path) -> Path | None:
    """REPORT.html from the race.json in `out` (validated); None without plotly."""
    plotly = _plotly()
    if plotly is None:
        return None
    out = Path(out)
    path = out / PAGE
    write_text_atomic(path, render_html(load(out), plotly))
    return path
