"""Noise measured: rounds (worker processes) in randomised, recorded order; a cell's
interval from its raw samples, rounds first; compare judging with that interval;
warm-up that waits for the timing to settle. docs/design.md §5."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.results import write as records
from bench.results.read import load_run
from bench.results.stats import (
    Verdict,
    cell_interval,
    compare_samples,
    median_draws,
    percentile_interval,
    seed_for,
    within_noise,
)
from bench.timing import measure
from bench.timing.matrix import PLANS, Cell, TaskConfig, round_order, round_plan

ROOT = Path(__file__).resolve().parent.parent


def _cells() -> list[Cell]:
    out = []
    for act in ("relu", "tanh", "sigmoid"):
        cfg = TaskConfig("mlp_regression", (("activation", act),), (("activation", act),), 4,
                         (4,), "tiny")
        for variant in ("eager", "nn"):
            for phase in ("first_call", "forward", "backward", "step"):
                out.append(Cell(cfg, "torch", variant, "cpu", "float32", 4, phase))
    return out


# -- the order of a round ------------------------------------------------------------------

def test_round_order_is_random_per_round_reproducible_and_keeps_programs_together():
    cells = _cells()
    orders = [round_order(cells, 0, "torch_mlp_regression", r) for r in range(4)]
    for order in orders:
        assert sorted(c.id for c in order) == sorted(c.id for c in cells)  # a permutation
        blocks = [(c.config, c.variant) for c in order]
        # each program's cells are contiguous (built once per round), first_call first
        seen = []
        for i, key in enumerate(blocks):
            if not seen or seen[-1] != key:
                assert key not in seen, "a program's cells were split"
                seen.append(key)
                assert order[i].phase == "first_call"
    ids = [[c.id for c in o] for o in orders]
    assert len({tuple(i) for i in ids}) == 4  # every round its own order
    assert ids[1] == [c.id for c in round_order(cells, 0, "torch_mlp_regression", 1)]
    assert ids[1] != [c.id for c in round_order(cells, 1, "torch_mlp_regression", 1)]  # seeded
    # steady-state phases are shuffled inside a program too, not only the programs
    phase_orders = {tuple(c.phase for c in o if (c.config, c.variant) == (cells[0].config,
                                                                          "eager"))
                    for o in [round_order(cells, s, "g", 0) for s in range(20)]}
    assert len(phase_orders) > 1


def test_one_round_with_extra_rounds_runs_them(tmp_path):
    """`--rounds 1 --extra-rounds 1` used to drop the extra round without a word: the
    wide cells get it, in a second worker process, and the run block says so."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--preset", "tiny", "--backends", "numpy",
         "--tasks", "mlp_regression", "--phases", "forward,step", "--no-gradcheck",
         "--rounds", "1", "--extra-rounds", "1", "--target-ci", "1e-9", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "numpy_mlp_regression.json").read_text())
    block = doc["nnparity_run"]
    assert (block["rounds"], block["rounds_run"], block["extra_rounds"]) == (1, 2, [2])
    timed = {b["extra_info"]["phase"]: b["extra_info"] for b in doc["benchmarks"]
             if b["extra_info"]["phase"] != "calibration"}
    assert set(timed) == {"forward", "step"}
    for info in timed.values():
        assert info["status"] == "ok" and len(info["round_sizes"]) == 2
        assert len(info["median_ci"]) == 2
    # every round's scratch files removed (the worker logs are kept, as for any run)
    assert {p.suffix for p in (out / ".work").iterdir()} <= {".log"}


def test_round_plan_splits_the_budget_and_sample_counts():
    plan = PLANS["standard"]
    assert plan.rounds == 3 and PLANS["quick"].rounds == 2
    one = round_plan(plan)
    assert one.budget_s == pytest.approx(plan.budget_s / 3)
    assert one.min_rounds * 3 >= plan.min_rounds and one.max_rounds * 3 >= plan.max_rounds


def test_a_run_with_rounds_records_each_rounds_order_and_samples(tmp_path):
    out = tmp_path / "run"
    # a target no interval can meet: every steady cell gets the extra round
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--preset", "tiny", "--backends", "numpy",
         "--tasks", "mlp_regression", "--no-gradcheck", "--rounds", "2", "--seed", "5",
         "--extra-rounds", "1", "--target-ci", "1e-9", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 worker processes" in proc.stderr
    doc = json.loads((out / "numpy_mlp_regression.json").read_text())
    run_block = doc["nnparity_run"]
    assert run_block["rounds"] == 2 and run_block["order_seed"] == 5
    assert run_block["rounds_run"] == 3 and run_block["extra_rounds"] == [3]
    load = run_block["machine_load"]
    assert len(load["loadavg_before"]) == 3 and 0.0 <= load["others_cpu_share"] <= 1.0
    timed = [b for b in doc["benchmarks"] if b["extra_info"]["phase"] != "calibration"]
    steady = [b for b in timed if b["extra_info"]["phase"] != "first_call"]
    assert len(timed) == 4 and len(steady) == 3
    for bench in timed:
        info = bench["extra_info"]
        assert len(info["round_sizes"]) == (3 if bench in steady else 2)
        assert sum(info["round_sizes"]) == len(bench["stats"]["data"])
        # the recorded interval is the one function's, from these raw samples
        ci = cell_interval(bench["stats"]["data"], info["round_sizes"],
                           seed=seed_for(info["cell"]))
        assert info["median_ci"] == [ci.low, ci.high] and info["unstable"] == ci.unstable
        assert ci.low <= bench["stats"]["median"] <= ci.high
    # the recorded positions are each round's order: a permutation of its cells
    by_round = list(zip(*[b["extra_info"]["round_positions"][:2] for b in timed], strict=True))
    assert all(sorted(p) == list(range(len(timed))) for p in by_round)
    assert sorted(b["extra_info"]["round_positions"][2] for b in steady) == [0, 1, 2]
    # the reader keeps the rounds apart
    run = load_run(out)
    assert sorted(len(s) for s in run.loc[run["phase"] != "calibration", "round_sizes"]) == [
        2, 3, 3, 3]


# -- merging rounds ------------------------------------------------------------------------

def _entry(cell: str, data: list[float], status: str = "ok", **info) -> dict:
    return {"name": cell, "extra_info": {"cell": cell, "phase": "step", "status": status,
                                         "error": "", **info},
            "stats": records.stats_block(data)}


def test_merge_rounds_pools_samples_and_an_error_in_any_round_is_an_error():
    a, b = "quick/t/numpy/reference/cpu/float32/bs4/step", "quick/t/numpy/x/cpu/float32/bs4/step"
    docs = [{"machine_info": {}, "benchmarks": [_entry(a, [1.0, 2.0], retraces=0),
                                                _entry(b, [3.0])]},
            {"machine_info": {}, "benchmarks": [_entry(a, [4.0], retraces=1),
                                                _entry(b, [], "error", )]}]
    docs[1]["benchmarks"][1]["extra_info"]["error"] = "boom"
    merged = records.merge_rounds(docs, [[a, b], [b, a]], {"rounds": 2})
    got = {e["extra_info"]["cell"]: e for e in merged["benchmarks"]}
    assert got[a]["stats"]["data"] == [1.0, 2.0, 4.0]
    assert got[a]["extra_info"]["round_sizes"] == [2, 1]
    assert got[a]["extra_info"]["round_positions"] == [0, 1]
    assert got[a]["extra_info"]["retraces"] == 1
    assert got[a]["stats"]["median"] == 2.0
    assert got[b]["extra_info"]["status"] == "error"
    assert got[b]["extra_info"]["error"] == "round 2 of 2: boom"
    assert merged["nnparity_run"] == {"rounds": 2}


# -- a cell's interval ---------------------------------------------------------------------

def _order_statistic_ci(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median from the binomial order statistics:
    an independent computation (no resampling)."""
    from scipy.stats import binom

    n, xs = len(x), np.sort(x)
    lo = int(binom.ppf((1 - confidence) / 2, n, 0.5))
    hi = int(binom.isf((1 - confidence) / 2, n, 0.5))
    return float(xs[max(lo - 1, 0)]), float(xs[min(hi, n - 1)])


def test_one_round_interval_matches_the_order_statistic_interval():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0.0, 0.2, 201)
    ci = cell_interval(x)
    assert ci.median == statistics.median(x.tolist())
    low, high = _order_statistic_ci(x)
    width = high - low
    # bootstrap percentiles land on neighbouring order statistics: within a fifth of the width
    assert abs(ci.low - low) < 0.2 * width and abs(ci.high - high) < 0.2 * width
    assert ci.rounds == 1 and ci.samples == 201


def _rounds_data(rng, k: int, n: int, between: float, within: float):
    shifts = rng.normal(0.0, between, k)
    parts = [1.0 + s + rng.normal(0.0, within, n) for s in shifts]
    return np.concatenate(parts), [n] * k


def test_interval_covers_the_truth_when_processes_shift_and_the_pooled_one_does_not():
    """Simulated cells whose rounds shift by a process-level offset (sd 5%) with little
    noise inside each (sd 1%): the hierarchical interval covers the true median (1.0)
    far more often than the interval that treats every sample as independent."""
    rng = np.random.default_rng(11)
    hit_h = hit_flat = 0
    trials = 120
    for t in range(trials):
        x, sizes = _rounds_data(rng, 5, 30, 0.05, 0.01)
        h = cell_interval(x, sizes, resamples=800, seed=t)
        f = percentile_interval(median_draws(x, (), 800, seed=t))
        hit_h += h.low <= 1.0 <= h.high
        hit_flat += f[0] <= 1.0 <= f[1]
    # with 5 rounds the bootstrap of round offsets undercovers a little (n/(n-1))
    assert hit_h / trials >= 0.75
    assert hit_flat / trials <= 0.45
    assert hit_h > hit_flat + 0.3 * trials


def test_unstable_by_iqr_or_disagreeing_rounds():
    steady = np.r_[np.full(20, 1.0), np.full(20, 1.01)]
    assert cell_interval(steady, [20, 20]).unstable == ""
    apart = np.r_[np.full(20, 1.0), np.full(20, 1.3)]
    assert "rounds disagree" in cell_interval(apart, [20, 20]).unstable
    wide = np.linspace(0.8, 1.2, 41)
    assert "IQR" in cell_interval(wide).unstable


def test_sizes_that_do_not_add_up_are_one_round():
    x = np.arange(1.0, 11.0)
    assert cell_interval(x, [3, 3]).rounds == 1
    assert cell_interval(x, [5, 5]).rounds == 2


# -- the "~" rule and compare --------------------------------------------------------------

def test_within_noise_rule():
    assert within_noise(0.99, 1.05)  # reaches into the band
    assert within_noise(1.01, 1.3)  # significant (excludes 1) but reaches into +-2%
    assert not within_noise(1.03, 1.3)
    assert not within_noise(0.5, 0.97)
    assert within_noise(0.5, 0.985)  # 1/1.02 = 0.980...
    assert within_noise(math.nan, math.nan)


def test_compare_does_not_call_slow_processes_a_regression():
    rng = np.random.default_rng(0)

    def rounds(*levels):
        return np.concatenate([lv * (1 + rng.normal(0, 0.01, 25)) for lv in levels]), [25] * len(
            levels)

    base, bs = rounds(1.0, 1.0, 1.0)
    two_slow, cs = rounds(1.0, 1.5, 1.5)  # two of three processes landed slow
    change = compare_samples(base, two_slow, base_sizes=bs, current_sizes=cs)
    assert change.verdict is Verdict.UNCHANGED and change.ci_low < 1.05
    # pooled as if independent, the same samples look like a certain 1.5x regression
    flat = compare_samples(base, two_slow)
    assert flat.verdict is Verdict.REGRESSION and flat.p_value < 1e-6
    all_slow, cs = rounds(1.5, 1.5, 1.5)
    change = compare_samples(base, all_slow, base_sizes=bs, current_sizes=cs)
    assert change.verdict is Verdict.REGRESSION and change.ci_low > 1.4


def test_compare_needs_the_interval_outside_the_noise_band():
    base = np.r_[np.full(10, 1.0), np.full(10, 1.001)]
    cur = base * 1.3
    assert compare_samples(base, cur, factor=1.01, base_sizes=[10, 10],
                           current_sizes=[10, 10]).verdict is Verdict.REGRESSION
    # the same change judged against a band wider than it is no regression
    assert compare_samples(base, cur, factor=1.01, base_sizes=[10, 10],
                           current_sizes=[10, 10], noise=0.5).verdict is Verdict.UNCHANGED


# -- warm-up -------------------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _NoCompiles:
    def count(self) -> None:
        return None


def test_warm_up_waits_until_the_timing_settles(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(measure, "time", clock)
    # a cell seen at 9 ms drifting down for 9 calls, then steady at 3.7 ms
    durations = iter([0.009 - 0.0005 * i for i in range(9)] + [0.0037] * 100)

    def call() -> None:
        clock.now += next(durations)

    warm = measure.warm_up(call, _NoCompiles(), PLANS["standard"])
    assert warm.settled is True and warm.calls > 9 + measure.SETTLE_WINDOW
    assert warm.last_s == pytest.approx(0.0037)


def test_warm_up_gives_up_settling_at_its_cap(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(measure, "time", clock)
    step = [0]

    def call() -> None:  # alternates 1 ms and 2 ms medians: never settles
        step[0] += 1
        clock.now += 0.001 * (1 + (step[0] // 3) % 2)

    plan = PLANS["quick"]
    warm = measure.warm_up(call, _NoCompiles(), plan)
    assert warm.settled is False
    assert warm.calls <= plan.max_warmup + measure.SETTLE_MAX_CALLS


# -- the report: summary, "~" rule, provenance, old files -----------------------------------

def _report_run(path: Path, medians: dict[str, float], *, commit: str = "abc123",
                rounds: int = 2, spread: float = 0.002, load: dict | None = None) -> None:
    """A run of one config and phase: one cell per backend, `rounds` rounds each."""
    from bench.timing import environment

    rng = np.random.default_rng(1)
    env = {**environment.nnparity_info(2), "git_commit": commit}
    for backend, median in medians.items():
        cell = f"quick/mlp_regression/{backend}/v/cpu/float32/bs64/step"
        data = list(median * (1 + rng.normal(0, spread, 12 * rounds)))
        info = {"cell": cell, "task": "mlp_regression", "preset": "quick", "backend": backend,
                "variant": "v", "device": "cpu", "dtype": "float32", "batch_size": 64,
                "phase": "step", "status": "ok", "error": "", "flops": 10**6,
                "round_sizes": [12] * rounds if rounds > 1 else []}
        doc = {"machine_info": records.default_machine_info(env),
               "benchmarks": [{"name": cell, "extra_info": info,
                               "stats": records.stats_block(data)}]}
        if load is not None:
            doc["nnparity_run"] = {"rounds": rounds, "order_seed": 0, "machine_load": load}
        records.write_group_file(path / f"{backend}_mlp_regression.json", doc)


def test_summary_ranks_frameworks_and_ties_what_is_within_noise(tmp_path):
    from bench.report import markdown as report

    _report_run(tmp_path, {"numpy": 1.000e-3, "torch": 1.005e-3, "jax": 1.5e-3})
    df = report.tidy(load_run(tmp_path))
    table = report.summary_table(df)
    row = next(line for line in table.splitlines() if "| step |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].startswith("**1. numpy/v")  # the fastest in bold
    assert cells[4].startswith("**=1. torch/v") and " ~1.00x [" in cells[4]  # a tie
    assert cells[5].startswith("3. jax/v") and "~" not in cells[5]  # 1.5x: a difference
    # every ratio in the timing table carries its interval, "~" when within noise
    timing = "\n".join(report.timing_tables(df))
    assert "~1.00x [" in timing and "0.67x [" in timing
    text = report.render(df, [])
    assert "0 of 3 timed cells unstable" in text and "from 2 round(s)" in text
    assert "Measured from a modified tree" not in text


def test_a_run_from_a_modified_tree_is_marked_in_the_report_and_by_validate(tmp_path, capsys):
    import argparse

    from bench.commands import validate
    from bench.report import markdown as report

    _report_run(tmp_path, {"numpy": 1e-3, "torch": 2e-3}, commit="abc123+dirty")
    text = report.render(report.tidy(load_run(tmp_path)), [])
    head = text.split("## Summary")[0]
    assert "**Measured from a modified tree** (commit abc123+dirty)" in head
    assert validate.main(argparse.Namespace(run_dir=str(tmp_path))) == 0  # a warning, not a fail
    assert "modified tree" in capsys.readouterr().err


def test_a_busy_machine_is_warned_about(tmp_path):
    from bench.report import markdown as report

    busy = {"loadavg_run_start": [0.1, 0.1, 0.1], "loadavg_before": [0.1] * 3,
            "loadavg_after": [1.0] * 3, "others_cpu_share": 0.4, "cores": 2}
    _report_run(tmp_path, {"numpy": 1e-3, "torch": 2e-3}, load=busy)
    assert "machine was busy" in report.render(report.tidy(load_run(tmp_path)), [])
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    _report_run(quiet, {"numpy": 1e-3, "torch": 2e-3},
                load={**busy, "others_cpu_share": 0.01})
    text = report.render(report.tidy(load_run(quiet)), [])
    assert "machine was busy" not in text and "(quiet)" in text


def test_old_single_round_files_still_read_report_and_compare(tmp_path):
    """Files written before rounds (no round_sizes, no nnparity_run): one round per cell."""
    from bench.regress.compare import compare_runs
    from bench.report import markdown as report

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _report_run(a, {"numpy": 1e-3, "torch": 2e-3}, rounds=1)
    _report_run(b, {"numpy": 1e-3, "torch": 3e-3}, rounds=1)
    run = load_run(a)
    assert all(len(s) == 1 for s in run["round_sizes"])
    text = report.render(report.tidy(run), [])
    assert "from 1 round(s)" in text
    cmp = compare_runs(run, load_run(b))
    verdicts = dict(zip(cmp.table["backend"], cmp.table["verdict"], strict=True))
    assert verdicts == {"numpy": "unchanged", "torch": "regression"}
    # the committed latest run (format 1, one round) reads and renders
    latest = load_run(ROOT / "results" / "latest")
    assert "unstable" in report.headline(report.tidy(latest))


# -- the A/A measure -----------------------------------------------------------------------

def test_aa_counts_significant_orderings_that_flip(tmp_path):
    from bench.audit import aa

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    _report_run(a, {"numpy": 1.0e-3, "torch": 1.5e-3, "jax": 1.001e-3})
    _report_run(b, {"numpy": 1.0e-3, "torch": 1.5e-3, "jax": 0.999e-3})
    _report_run(c, {"numpy": 1.0e-3, "torch": 0.6e-3, "jax": 1.001e-3})
    # same orderings: numpy<torch and jax<torch significant in each run (2 + 2); the
    # numpy/jax pair is within noise, so its reversal is no flip
    assert aa.flips(load_run(a), load_run(b)) == (4, 0)
    # torch became the fastest: both of its orderings reverse, in both directions
    assert aa.flips(load_run(a), load_run(c)) == (4, 4)
    code, reg, imp, cells = aa.compare_pair(a, b)
    assert (code, reg, imp, cells) == (0, 0, 0, 3)
    code, reg, imp, _ = aa.compare_pair(a, c)
    assert (code, reg, imp) == (0, 0, 1)
    ok, text = aa.verdict([aa.PairResult(1, 0, 0, 0, 3, 40, 2, (1.0, 1.0))])
    assert ok and "2 of 40" in text
    ok, _ = aa.verdict([aa.PairResult(1, 0, 0, 0, 3, 40, 3, (1.0, 1.0))])  # 7.5% > 5%
    assert not ok
    ok, _ = aa.verdict([aa.PairResult(1, 1, 1, 0, 3, 40, 0, (1.0, 1.0))])  # compare failed
    assert not ok


def test_aa_evaluate_judges_kept_pairs_again_without_running(tmp_path, capsys):
    from bench.audit import aa

    for pair, torch_b in ((1, 1.5e-3), (2, 0.6e-3)):
        for side, torch in (("a", 1.5e-3), ("b", torch_b)):
            d = tmp_path / f"pair{pair}" / side
            d.mkdir(parents=True)
            _report_run(d, {"numpy": 1.0e-3, "torch": torch})
    (tmp_path / "pair3" / "a").mkdir(parents=True)  # unfinished: skipped
    assert aa.main(["--evaluate", str(tmp_path), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [p["pair"] for p in doc["pairs"]] == [1, 2]
    assert [p["flipped"] for p in doc["pairs"]] == [0, 2] and not doc["pass"]
    assert doc["pairs"][0]["seconds"] == [None, None]
    assert aa.main(["--evaluate", str(tmp_path / "pair3")]) == 2
    assert "no finished pair" in capsys.readouterr().err


def test_baseline_check_says_which_commit_and_how_old(tmp_path):
    import datetime as dt

    from bench.regress.baseline import baseline_age

    path = tmp_path / "b.json"
    path.write_text(json.dumps({"nnparity_baseline": {"commit": "1fab5b0aaaaaaaaa",
                                                      "updated": "2026-11-01T00:00:00+00:00"},
                                "machine_info": {}, "benchmarks": []}))
    line = baseline_age(path, now=dt.datetime(2026, 12, 6, tzinfo=dt.UTC))
    assert "1fab5b0aaa" in line and "35 days old" in line and "2026-11-01" in line
    path.write_text("{}")
    assert "unknown date" in baseline_age(path)


def test_a_round_cut_short_keeps_earlier_samples_but_not_for_the_cell_that_hung():
    from bench.timing.matrix import Group
    from bench.timing.runner import _unreached_keep_earlier

    cells = _cells()[1:4]  # forward, backward, step of one program
    a, b, c = (x.id for x in cells)
    hang = "group timed out after 9s (hang?)"
    docs = [{"benchmarks": [_entry(x, [1.0]) for x in (a, b, c)]},
            {"benchmarks": [_entry(a, [1.1]), _entry(b, [], "error", ),
                            _entry(c, [], "error")]}]
    for e in docs[1]["benchmarks"][1:]:
        e["extra_info"]["error"] = hang
    _unreached_keep_earlier(docs, Group("torch", "mlp_regression", tuple(cells)), hang)
    merged = records.merge_rounds(docs, [[a, b, c], [a, b, c]])
    got = {e["extra_info"]["cell"]: e["extra_info"] for e in merged["benchmarks"]}
    assert got[a]["round_sizes"] == [1, 1]
    assert got[b]["status"] == "error" and hang in got[b]["error"]  # it was running: it hung
    assert got[c]["status"] == "ok" and got[c]["round_sizes"] == [1]  # never reached again


def test_continuous_runs_one_round_per_run_where_the_revision_knows_rounds(tmp_path):
    """The probe asks each revision's own `run --help`, wherever it keeps its runner."""
    from bench.regress.continuous import ONE_ROUND, Side, _one_round

    def tree(name: str, cli: str) -> Path:
        (tmp_path / name / "bench").mkdir(parents=True)
        (tmp_path / name / "bench" / "__init__.py").write_text("")
        (tmp_path / name / "bench" / "cli.py").write_text(cli)
        return tmp_path / name

    # a revision whose runner lives elsewhere, and whose source never spells the option
    new = tree("new", "import sys\nassert sys.argv[1:] == ['run', '--help']\n"
                      "print('  --rounds N\\n  --' + 'extra-rounds N  more rounds')\n")
    old = tree("old", "print('usage: nnparity run [--budget B] [--out OUT]')\n")
    # one that only mentions the option in another's help text is not taken for it
    near = tree("near", "print('  --extra-rounds-max N')\n")
    broken = tree("broken", "import sys\nprint('--extra-rounds'); sys.exit(1)\n")
    py = sys.executable
    assert _one_round(Side("head", "HEAD", "0" * 40, new), [], py) == ONE_ROUND
    assert _one_round(Side("base", "v1", "1" * 40, old), [], py) == []  # an older runner
    assert _one_round(Side("base", "v2", "2" * 40, near), [], py) == []
    assert _one_round(Side("base", "v3", "3" * 40, broken), [], py) == []  # help failed
    assert _one_round(Side("head", "HEAD", "0" * 40, new), ["--rounds", "3"], py) == []
    # this checkout's real `nnparity run --help`
    assert _one_round(Side("head", "HEAD", "0" * 40, ROOT), [], py) == ONE_ROUND


def test_rounds_interleave_across_groups(tmp_path):
    """Round 1 of every group, then round 2 of every group (asv's interleaving): a
    disturbance of a minute lands in one round of several groups, not in all of one."""
    import itertools
    import re

    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--preset", "tiny", "--backends", "numpy",
         "--tasks", "mlp_regression,rnn_sequence", "--phases", "step", "--no-gradcheck",
         "--rounds", "2", "--extra-rounds", "0", "--out", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tasks = [m.group(1) for m in re.finditer(r"ETA \d+:\d+\s+tiny/(\w+)", proc.stderr)]
    blocks = [task for task, _ in itertools.groupby(tasks)]
    assert blocks == ["mlp_regression", "rnn_sequence", "mlp_regression", "rnn_sequence"]
    run = load_run(tmp_path / "run")
    timed = run[run["phase"] != "calibration"]
    assert all(len(s) == 2 for s in timed["round_sizes"])
    assert all(len(x) for x in timed["samples"])


def test_a_single_round_baseline_borrows_the_other_sides_process_spread():
    """An old single-process baseline against a run with rounds: the baseline's one
    process could have been a fast one; it gets the current side's process spread."""
    rng = np.random.default_rng(4)
    base = 1.0 * (1 + rng.normal(0, 0.005, 60))  # one process, tight

    def rounds(*levels):
        return np.concatenate([lv * (1 + rng.normal(0, 0.005, 20)) for lv in levels])

    wide = rounds(1.15, 1.3, 1.45)  # the current run's processes spread +-12%
    change = compare_samples(base, wide, base_sizes=[60], current_sizes=[20, 20, 20])
    # the current side's own spread alone puts every replicate above 1.15 (and the
    # baseline's tight process would make that the ratio's interval); the borrowed
    # spread widens the ratio's interval by the baseline's possible process offset too
    assert percentile_interval(median_draws(wide, [20, 20, 20], seed=1))[0] > 1.15
    assert change.ci_low < 1.06 and change.ci_high > 1.55
    # a slow-down every process shows, with processes that agree, is still found
    tight = rounds(1.28, 1.3, 1.32)
    assert compare_samples(base, tight, base_sizes=[60],
                           current_sizes=[20, 20, 20]).verdict is Verdict.REGRESSION


@pytest.mark.parametrize(("argv", "what"), [
    (["--run-args", '"unbalanced'], "--run-args"),
    (["--pairs", "0"], None),
    (["--max-flips", "2"], "--max-flips"),
    (["--keep", "FILE"], "--keep"),
    (["--evaluate", "FILE", "--keep", "FILE"], "--keep"),
])
def test_aa_bad_input_exits_2_with_one_line(argv, what, tmp_path, capsys):
    from bench.audit import aa

    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    try:
        code = aa.main(argv)
    except SystemExit as exc:  # argparse's own type check
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    if what:
        assert len(err) == 1 and what in err[0]


def test_aa_reports_compares_real_exit_when_nothing_was_compared(tmp_path):
    from test_compare import noisy, write_run

    from bench.regress.compare import compare_runs, exit_code
    from bench.results.read import load_run

    a = write_run(tmp_path / "a", {"mlp_regression/torch/eager/cpu/float32/bs32/step":
                                   noisy(0.01)})
    b = write_run(tmp_path / "b", {"mlp_regression/jax/jit/cpu/float32/bs32/step":
                                   noisy(0.01)})
    cmp = compare_runs(load_run(a), load_run(b))
    assert exit_code(cmp) == 1 and exit_code(cmp, allow_missing=True) == 0
