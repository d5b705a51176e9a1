"""`nnparity race`: the rules (olympic scoring, the failure rule), bad input, the report
from a fabricated results file, a tiny real race, and float64 steps to target identical
across backends."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

import bench.cli
from bench.race.config import MAX_FAILED_SEEDS, RACE_TASKS
from bench.race.report import FORMAT, RAW, load
from bench.race.score import olympic, score_entry
from bench.race.worker import RUN_FIELDS, run_group
from impls import is_installed


# -- the rules ------------------------------------------------------------------------------------
def test_olympic_drops_the_fastest_and_the_slowest():
    o = olympic([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (o.mean, o.low, o.high, o.kept) == (3.0, 2.0, 4.0, 3)
    # a seed that never reached the target is the slowest, and is the one dropped
    o = olympic([1.0, 2.0, 4.0, math.inf])
    assert (o.mean, o.low, o.high) == (3.0, 2.0, 4.0)
    # two such seeds: one is kept, so there is no score
    assert math.isnan(olympic([1.0, 2.0, math.inf, math.inf]).mean)
    # fewer than three seeds: nothing to drop
    assert olympic([2.0, 4.0]).mean == 3.0


def _run(seed, warm, steps, reached=True, error=None, task="mlp_regression", backend="numpy",
         variant="reference", dtype="float32"):
    return {"task": task, "backend": backend, "variant": variant, "dtype": dtype,
            "precision": "fp32", "seed": seed, "reached": reached, "steps": steps,
            "metric": 0.5 if reached else 0.1, "train_s": warm + 0.01, "eval_s": 0.001,
            "first_step_s": 0.02, "step_s": 0.001, "compile_s": 0.01 if seed == 0 else 0.0,
            "warm_s": warm, "startup_s": 2.0,
            "evaluations": [[steps, 0.5 if reached else 0.1]], "error": error}


def test_one_missed_seed_is_allowed_and_scored_as_the_slowest():
    runs = [_run(0, 1.0, 100), _run(1, 2.0, 200), _run(2, 3.0, 300), _run(3, 4.0, 400),
            _run(4, 0.5, 2000, reached=False)]
    s = score_entry(runs)
    assert s.status == "ok" and s.failed == 1 == MAX_FAILED_SEEDS
    # kept: 2.0, 3.0, 4.0 (1.0 is the fastest, the missed seed the slowest)
    assert s.warm.mean == pytest.approx(3.0) and (s.warm.low, s.warm.high) == (2.0, 4.0)
    assert s.steps.mean == pytest.approx(300) and (s.steps_min, s.steps_max) == (100, 400)
    # cold = start-up + compile (both of seed 0, as a fresh process pays them) + warm
    assert s.cold.mean == pytest.approx(3.0 + 2.0 + 0.01)


def test_more_than_one_missed_seed_fails_the_entry():
    runs = [_run(0, 1.0, 100), _run(1, 2.0, 200), _run(2, 3.0, 300),
            _run(3, 0.5, 2000, reached=False), _run(4, 0.1, 0, reached=False, error="boom")]
    s = score_entry(runs)
    assert s.status == "failed" and s.failed == 2
    assert math.isnan(s.warm.mean)


@pytest.mark.parametrize("runs", [
    [_run(0, 1.0, 100, reached=False)],  # one seed that missed
    [_run(0, 1.0, 100), _run(1, 2.0, 200, reached=False)],  # two seeds drop none
])
def test_a_miss_among_fewer_than_three_seeds_fails_the_entry(runs):
    s = score_entry(runs)
    assert s.failed == 1 and s.status == "failed" and math.isnan(s.warm.mean)


# -- bad input: one line, exit 2 ------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["race", "--tasks", "nope"],
    ["race", "--backends", "caffe"],
    ["race", "--preset", "huge"],
    ["race", "--precisions", "fp8"],
    ["race", "--seeds", "0"],
    ["race", "--out", ""],
])
def test_bad_options_exit_2_with_one_line(argv, capsys):
    try:  # argparse's own errors exit; the command's come back as the code
        code = bench.cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_options_past_the_parser_exit_2(capsys):
    code = bench.cli.main(["race", "--tasks", "mlp_regression,nope", "--backends", "numpy"])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1


# -- the report from a fabricated results file ----------------------------------------------------
def _doc(runs):
    return {"format": FORMAT,
            "tasks": {"mlp_regression": {"target": 0.45, "higher_is_better": True,
                                         "eval_every": 10, "budget": 2000,
                                         "reason": "fabricated"}},
            "machine": {"platform": "test", "cpus": 2, "threads": 1, "load_before": 1.0,
                        "load_after": 1.5, "date": "today", "seconds": 12.0},
            "groups": [{"backend": "numpy", "task": "mlp_regression", "version": "1"}],
            "runs": runs}


def _fabricated():
    runs = [_run(s, 1.0 + s, 100 + 10 * s) for s in range(5)]
    runs += [_run(s, 0.5 + s, 100 + 10 * s, backend="torch", variant="eager",
                  reached=s < 3) for s in range(5)]
    return runs


def test_report_renders_from_a_fabricated_results_file(tmp_path, capsys):
    (tmp_path / RAW).write_text(json.dumps(_doc(_fabricated())))
    assert bench.cli.main(["race", "--report", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "## mlp_regression" in text and "olympic" in text
    numpy_row = next(line for line in text.splitlines() if line.startswith("| numpy reference"))
    # warm: seeds 1.0..5.0, olympic 3.0 [2.0, 4.0]; steps 110..130 kept, range 100-140
    assert "| 3 [2, 4] |" in numpy_row and "120 (100-140)" in numpy_row
    torch_row = next(line for line in text.splitlines() if line.startswith("| torch eager"))
    assert "**failed**" in torch_row and "2/5" in torch_row
    assert (tmp_path / "race_mlp_regression.png").stat().st_size > 1000


@pytest.mark.parametrize("mutate, word", [
    (lambda d: d["runs"][0].update(task="../../etc/passwd"), "task"),
    (lambda d: d["runs"][0].update(variant="../x"), "variant"),
    (lambda d: d["runs"][0].update(warm_s=float("nan")), "warm_s"),
    (lambda d: d["runs"][0].update(steps=-1), "steps"),
    (lambda d: d["runs"][0].update(backend="caffe"), "backend"),
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d["tasks"].update({"/tmp/x": {}}), "task"),
])
def test_a_bad_results_file_is_one_line_exit_2(tmp_path, capsys, mutate, word):
    doc = _doc(_fabricated())
    mutate(doc)
    (tmp_path / RAW).write_text(json.dumps(doc))
    assert bench.cli.main(["race", "--report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert word in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "REPORT.md").exists()


def test_a_missing_or_broken_results_file_is_exit_2(tmp_path, capsys):
    assert bench.cli.main(["race", "--report", str(tmp_path)]) == 2
    (tmp_path / RAW).write_text("{not json")
    assert bench.cli.main(["race", "--report", str(tmp_path)]) == 2
    assert "not JSON" in capsys.readouterr().err


# -- real races, tiny ------------------------------------------------------------------------------
def test_a_numpy_race_end_to_end(tmp_path):
    out = tmp_path / "race"
    code = bench.cli.main(["race", "--tasks", "mlp_regression", "--backends", "numpy",
                           "--seeds", "3", "--threads", "1", "--out", str(out), "--quiet"])
    assert code == 0
    doc = load(out)
    assert len(doc["runs"]) == 3 and all(r["reached"] for r in doc["runs"])
    raw = json.loads((out / RAW).read_text())
    assert set(raw["runs"][0]) == set(RUN_FIELDS)
    target = RACE_TASKS["mlp_regression"].target
    for r in doc["runs"]:
        # the clock stopped at the first evaluation that met the target
        assert r["evaluations"][-1] == (r["steps"], r["metric"]) and r["metric"] >= target
        assert all(m < target for _, m in r["evaluations"][:-1])
        assert r["steps"] % RACE_TASKS["mlp_regression"].eval_every == 0
        assert 0 < r["eval_s"] < r["train_s"] and r["startup_s"] > 0
    assert (out / "REPORT.md").is_file() and (out / "race_mlp_regression.png").is_file()
    assert not (out / ".work").exists()  # scratch files go once race.json holds the runs


def test_float64_steps_to_target_are_identical_across_backends():
    # a looser target than the race's, evaluated every 5 steps: cheap, and still many
    # evaluations before it is met, each of which must agree
    race = dataclasses.replace(RACE_TASKS["mlp_regression"], target=0.40, eval_every=5)
    backends = [b for b in ("numpy", "torch", "jax", "tensorflow") if is_installed(b)]
    if len(backends) < 2:
        pytest.skip("needs numpy and at least one framework")
    spec = {"task": "mlp_regression", "variants": "default", "dtypes": ["float64"],
            "precisions": ["fp32"], "seeds": 1}
    runs = {b: run_group({**spec, "backend": b}, race)["runs"][0] for b in backends}
    ref = runs["numpy"]
    assert ref["reached"] and ref["steps"] > 2 * race.eval_every
    for b, r in runs.items():
        assert r["error"] is None, (b, r["error"])
        assert r["steps"] == ref["steps"], (b, r["steps"], ref["steps"])
        for (s, m), (s_ref, m_ref) in zip(r["evaluations"], ref["evaluations"], strict=True):
            assert s == s_ref and m == pytest.approx(m_ref, rel=1e-9, abs=1e-12), b
