"""REPORT.html: built from the tidy table, then opened in headless Chromium (skips without one).

The browser part needs Debian's `chromium` and `chromium-driver` (or any Chrome and
chromedriver on PATH) and selenium; .ci/run installs the browser before the tests.
"""

from __future__ import annotations

import colorsys
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bench import cli
from bench.report import html as report_html
from bench.results import write as records
from bench.results.envdiff import differences
from bench.timing.environment import nnparity_info
from bench.timing.matrix import Selection, build_groups, task_configs

pytest.importorskip("plotly")

BACKENDS = ("numpy", "torch", "jax")
#: two torch variants and two jax ones, to be told apart in every chart
VARIANTS = {"numpy": ["reference"], "torch": ["eager", "nn"], "jax": ["flax", "jit"]}
#: jax as fast as torch (a tie in the summary), numpy twice as slow
SPEED = {"numpy": 1.0, "torch": 2.0, "jax": 2.0}


def _write_run(path: Path) -> None:
    """A synthetic standard-preset MLP run: three backends, five variants, a batch sweep,
    first calls."""
    rng = np.random.default_rng(0)
    cfgs = task_configs("mlp_regression", "standard", {"activation": "tanh"})
    described = {b: {"installed": True, "variants": VARIANTS[b], "devices": ["cpu"],
                     "supports": {c.label: VARIANTS[b] for c in cfgs}} for b in BACKENDS}
    sel = Selection(tasks=("mlp_regression",), backends=BACKENDS, variants=None,
                    devices=("cpu",), dtypes=("float32",),
                    phases=("forward", "backward", "step", "first_call"), preset="standard",
                    overrides={"activation": "tanh"})
    machine = {"nnparity": nnparity_info(2)}
    for k, group in enumerate(build_groups(sel, described)):
        stream = path / f"{group.name}.jsonl"
        cal = records.calibration_record(group.backend, "cpu", "standard", 2, variant="x",
                                         gflops=50.0, gemm_size=1024)
        records.append_stream(stream, records.benchmark_entry(cal, [0.05, 0.051, 0.05]))
        for cell in group.cells:
            slower = 1.0 if cell.variant in ("reference", "eager", "jit") else 1.3
            base = 1e-3 * cell.batch_size / 64 / SPEED[cell.backend] * slower * (
                1000 if cell.phase == "first_call" else 1)
            rec = records.record_for(
                cell, "standard", 2, flops=10**6, peak_memory_bytes=5 * 2**20,
                memory_source="rss", gradcheck={"passed": True, "max_rel_err": 10.0 ** -(k + 5),
                                                "tolerance": 1e-4})
            records.append_stream(stream, records.benchmark_entry(
                rec, list(base * (1 + 0.01 * rng.random(10)))))
        records.finish_group(group, "standard", path / f"{group.name}.json", path / "none",
                             stream, machine, "", 2)
        stream.unlink()


class _Fetches(HTMLParser):
    """Every src/href a tag of the page would load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    _write_run(run)
    assert cli.main(["report", str(run), "--html"]) == 0
    return run / "REPORT.html"


def test_html_is_self_contained_and_holds_the_markdown_reports_content(report: Path):
    text = report.read_text()
    fetched = _Fetches()
    fetched.feed(text)
    assert fetched.urls == []  # nothing to fetch: opens offline
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inlined
    for heading in ("Timings by task", "Gradient agreement with the float64 NumPy reference",
                    "First call (trace/compile) against steady state", "Environment"):
        assert heading in text, heading
    # the hover data carries cell ids (Plotly's JSON writes "/" as "\\u002f")
    assert "standard/mlp_regression[activation=tanh]/torch/eager/cpu/float32/bs256/step" in \
        text.replace("\\u002f", "/")
    assert "These results come from different environments" not in text


def _hue(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(r, g, b)[0]


def _trace_styles(traces) -> dict[str, tuple]:
    """impl -> (colour, marker symbol, dash) of every trace in a chart's data."""
    return {t["meta"]["impl"]: (t["marker"]["color"], t["marker"]["symbol"],
                                (t.get("line") or {}).get("dash")) for t in traces}


def test_every_variant_has_its_own_shade_marker_and_dash_the_same_in_every_chart(report):
    import plotly.graph_objects as go

    from bench.report.markdown import tidy
    from bench.report.plots import BACKEND_COLOURS
    from bench.results.read import load_run

    df = tidy(load_run(report.parent))
    sweeps = report_html.sweep_figures(df, go)
    first = report_html.first_call_figure(df, go)
    charts = [[t.to_plotly_json() for t in fig.data] for _, fig in sweeps]
    charts.append([t.to_plotly_json() for t in first.data])
    impls = {f"{b}/{v}" for b, vs in VARIANTS.items() for v in vs}
    seen = {}
    for traces in charts:
        styles = _trace_styles(traces)
        assert set(styles) == impls  # every variant, named in the legend by its name
        assert {t["name"] for t in traces} == impls
        assert all(t["legendgroup"] == t["meta"]["backend"] for t in traces)
        colours = [c for c, _, _ in styles.values()]
        assert len(set(colours)) == len(colours), styles  # no two variants share a colour
        for impl, (colour, marker, dash) in styles.items():
            backend = impl.split("/")[0]
            mates = {i: st for i, st in styles.items() if i.startswith(backend + "/")}
            # within a framework: its own marker, and in the line charts its own dash
            assert [st[1] for st in mates.values()].count(marker) == 1, mates
            assert dash is None or [st[2] for st in mates.values()].count(dash) == 1, mates
            # a shade of the framework's hue
            if backend != "numpy":  # grey has no hue
                assert abs(_hue(colour) - _hue(BACKEND_COLOURS[backend])) < 0.02, impl
            # the same look in every chart (colour and marker)
            assert seen.setdefault(impl, (colour, marker)) == (colour, marker), impl


def test_the_page_opens_with_the_ranked_summary_best_highlighted_and_ties_marked(report):
    text = report.read_text()
    body = text[text.index("<body>"):]
    summary = body.index('id="summary-frameworks-ranked-per-task-and-phase"')
    assert summary < body.index('id="interactive-figures"') < body.index(
        'id="how-to-read-the-numbers"')
    table = body[summary:body.index("</table>", summary)]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    assert len(rows) == 3  # forward, backward, step of the one config
    for row in rows:
        cells = re.findall(r"<td([^>]*)>(.*?)</td>", row)
        # jax/jit and torch/eager equally fast: the best (highlighted), tied; numpy third
        assert 'class="best"' in cells[3][0] and "jax/jit" in cells[3][1]
        assert 'class="best tie"' in cells[4][0] and "=1. torch/eager" in cells[4][1]
        assert "class=" not in cells[5][0] and "3. numpy/reference" in cells[5][1]
        keys = [float(re.search(r'data-key="([^"]+)"', a).group(1)) for a, _ in cells[3:]]
        assert keys == sorted(keys) and keys[2] == pytest.approx(2 * keys[0], rel=0.05)


def test_agreement_colour_range_is_clipped_to_the_bulk_of_the_errors():
    errors = np.array([1e-7, 2e-7, 5e-7, 1e-6, 3e-7, 1e-7, 2e-7, 1e-7, 4e-7, 1e-7,
                       1e-7, 2e-7, 3e-7, 1e-7, 2e-7, 1e-7, 1e-7, 2e-7, 1e-7, 5e-1])
    lo, hi = report_html.agreement_range(errors)
    assert lo == -7 and hi <= -5  # the one far-off backend saturates instead of stretching
    assert report_html.agreement_range(np.array([0.0, math.nan])) == (-16.0, 0.0)


def test_environment_differences_name_what_differs():
    a = nnparity_info(2)
    b = dict(a, frameworks=dict(a["frameworks"], numpy="0.0.1"), threads=1,
             blas=[{"user_api": "blas", "internal_api": "mkl", "version": "2024"}])
    lines = differences({"base": a, "head": b})
    assert any(line.startswith("numpy: ") and "0.0.1 (head)" in line for line in lines)
    assert any(line.startswith("threads: 2 (base) vs 1 (head)") for line in lines)
    assert any(line.startswith("BLAS: ") and "mkl 2024" in line for line in lines)
    assert differences({"base": a, "again": dict(a)}) == []


def test_markdown_report_lists_environment_differences_above_the_numbers(tmp_path: Path):
    import json

    run = tmp_path / "run"
    run.mkdir()
    _write_run(run)
    file = run / "torch_mlp_regression.json"
    doc = json.loads(file.read_text())
    doc["machine_info"]["nnparity"]["frameworks"]["torch"] = "1.0.0"
    file.write_text(json.dumps(doc))
    assert cli.main(["report", str(run), "--no-plots"]) == 0
    text = (run / "REPORT.md").read_text()
    assert text.index("different environments") < text.index("## Timings by task")
    assert "1.0.0 (torch_mlp_regression.json)" in text


# -- in a real browser --------------------------------------------------------------------------

#: set (by .ci/run, once it has installed the browser) to make a missing or broken
#: browser a failure instead of a skip: a CI log must not pass this test by skipping it
REQUIRE_ENV = "NNPARITY_REQUIRE_BROWSER"


def _skip(reason: str):
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set: the browser test must run)")
    pytest.skip(reason)


def _browser():
    if os.environ.get(REQUIRE_ENV):
        import selenium.webdriver as webdriver
    else:
        webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        _skip("no headless Chromium + chromedriver installed (apt-get install chromium "
              "chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1300,1200"):
        options.add_argument(arg)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as exc:  # a browser that cannot start here is not a test failure
        _skip(f"Chromium did not start: {str(exc).splitlines()[0]}")


@pytest.fixture(scope="module")
def page(report: Path):
    browser = _browser()
    browser.set_page_load_timeout(120)
    browser.get(report.resolve().as_uri())
    yield browser
    browser.quit()


_TRACES = """return Array.from(document.querySelectorAll('.chart .plotly-graph-div')).map(
  g => (g.data || []).map(t => [t.meta ? t.meta.backend : null, t.visible === false]));"""


def test_charts_render_without_console_errors(page):
    rendered = page.execute_script(
        "return Array.from(document.querySelectorAll('.chart .plotly-graph-div'))"
        ".map(g => g.querySelectorAll('svg.main-svg').length > 0 && (g.data||[]).length)")
    # one sweep chart (one config), the agreement heat map, the first-call chart
    assert len(rendered) == 3 and all(rendered), rendered
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_unticking_a_backend_hides_its_traces_in_every_chart(page):
    box = page.find_element("css selector", "#toggles input[value='torch']")
    box.click()
    traces = page.execute_script(_TRACES)
    seen = [t for chart in traces for t in chart if t[0] is not None]
    assert any(b == "torch" for b, _ in seen)
    assert all(hidden == (b == "torch") for b, hidden in seen), seen
    box.click()
    assert not any(hidden for chart in page.execute_script(_TRACES) for _, hidden in chart)


def test_hovering_a_point_shows_its_cell_id(page):
    from selenium.webdriver.common.action_chains import ActionChains

    chart = page.find_element("css selector", ".chart .plotly-graph-div")
    page.execute_script("arguments[0].scrollIntoView()", chart)
    point = chart.find_element("css selector", ".scatterlayer .trace .points path")
    ActionChains(page).move_to_element(point).perform()
    text = page.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.hoverlayer .hovertext'))"
        ".map(e => e.textContent).join(' ')", chart)
    assert "standard/mlp_regression[activation=tanh]/" in text and "/step" in text, text
    assert "median" in text and "% of peak" in text and "agreement pass" in text


def test_variants_are_told_apart_in_the_rendered_charts(page):
    charts = page.execute_script("""return Array.from(document.querySelectorAll(
      '.chart .plotly-graph-div')).filter(g => (g.data||[]).some(t => t.meta && t.meta.impl))
      .map(g => g.data.map(t => ({name: t.name, meta: t.meta, marker: t.marker,
                                  line: t.line || null, legendgroup: t.legendgroup})));""")
    assert len(charts) == 2  # the sweep and the first-call chart
    looks = [_trace_styles(traces) for traces in charts]
    for styles in looks:
        assert len({(c, m) for c, m, _ in styles.values()}) == len(styles) == 5
    assert {k: v[:2] for k, v in looks[0].items()} == {k: v[:2] for k, v in looks[1].items()}
    # and the legend draws one entry per variant, under its framework's title
    legend = page.execute_script(
        "return Array.from(Array.from(document.querySelectorAll('.chart .plotly-graph-div'))[0]"
        ".querySelectorAll('.legend .legendtext')).map(e => e.textContent)")
    assert {t for t in legend if "/" in t} == set(looks[0])
    assert {t for t in legend if "/" not in t} == set(VARIANTS)  # the group titles


def test_the_summary_sorts_by_time_on_a_click(page):
    head = page.find_element("css selector", "table th:nth-child(5)")  # "2nd"
    page.execute_script("arguments[0].scrollIntoView()", head)
    head.click()
    head.click()  # descending: the slowest second entry first
    keys = page.execute_script(
        "return Array.from(document.querySelector('table').tBodies[0].rows)"
        ".map(r => parseFloat(r.cells[4].dataset.key))")
    assert keys == sorted(keys, reverse=True) and len(keys) == 3
