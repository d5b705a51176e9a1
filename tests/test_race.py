"""`nnparity race`: the rules (olympic scoring, the failure rule), bad input, the report
from a fabricated results file, a tiny real race, and float64 steps to target identical
across backends."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re

import pytest

import bench.cli
import bench.options
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


# -- the journal: an interrupted race loses nothing finished and resumes ---------------------------
FAKE_WORKER = '''
import json, os, signal, sys
spec = json.load(open(sys.argv[1]))
skip = [list(k) for k in spec["skip"]]
stop = int(os.environ.get("FAKE_KILL_AFTER", "-1"))
group = {"backend": spec["backend"], "task": spec["task"], "version": "fake", "threads": 1,
         "import_s": 0.1, "data_s": 0.0, "runs": [], "skipped": []}
for seed in range(spec["seeds"]):
    if ["reference", "float32", "fp32", seed] in skip:
        continue
    if len(group["runs"]) == stop:
        os.kill(os.getpid(), signal.SIGKILL)  # a worker lost mid-group
    run = dict(json.loads(os.environ["FAKE_RUN"]), seed=seed, warm_s=1.0 + seed)
    group["runs"].append(run)
    with open(spec["journal"], "a") as fh:
        fh.write(json.dumps(run) + "\\n")
json.dump(group, open(sys.argv[2], "w"))
'''


def _plan(seeds=5):
    return {"preset": "default", "tasks": ["mlp_regression"], "backends": ["numpy"],
            "variants": "default", "dtypes": ["float32"], "precisions": ["fp32"],
            "seeds": seeds}


def test_a_killed_worker_keeps_its_finished_runs_and_the_race_resumes(tmp_path, monkeypatch):
    import sys

    from bench.race.run import race

    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_WORKER)
    worker = (sys.executable, str(fake))
    out = tmp_path / "race"
    out.mkdir()
    monkeypatch.setenv("FAKE_RUN", json.dumps(_run(0, 1.0, 100)))
    monkeypatch.setenv("FAKE_KILL_AFTER", "2")
    doc, _ = race(_plan(), out, 1, 60.0, worker=worker)
    # the two seeds that finished before the kill are kept; the race says it is partial
    assert doc["partial"] and doc["pending"] == [["mlp_regression", "numpy"]]
    assert [r["seed"] for r in doc["runs"]] == [0, 1]
    assert "worker exited -9" in doc["groups"][0]["error"]
    on_disk = load(out)
    assert on_disk["partial"] and len(on_disk["runs"]) == 2
    assert "**Partial race**" in (out / "REPORT.md").read_text()

    monkeypatch.setenv("FAKE_KILL_AFTER", "-1")
    # other options than the interrupted race's: refused, one line
    with pytest.raises(bench.options.InputError, match="other options"):
        race(_plan(seeds=4), out, 1, 60.0, resume=True, worker=worker)
    doc, _ = race(_plan(), out, 1, 60.0, resume=True, worker=worker)
    assert not doc["partial"] and doc["pending"] == []
    assert sorted(r["seed"] for r in doc["runs"]) == [0, 1, 2, 3, 4]  # each seed once
    assert doc["groups"][0]["error"] is None
    assert "Partial race" not in (out / "REPORT.md").read_text()
    with pytest.raises(bench.options.InputError, match="finished race"):
        race(_plan(), out, 1, 60.0, resume=True, worker=worker)


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_an_interrupted_race_keeps_what_finished_and_resume_completes_it(tmp_path, signum):
    """A real race in a subprocess, stopped once its worker journaled a seed: SIGINT to
    its process group (a terminal's Ctrl-C), SIGTERM (`kill`), or SIGKILL (no handler
    runs). --resume then runs only the rest, and what finished is kept as it was."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from bench.race.run import read_journal
    from bench.results.paths import ROOT

    out = tmp_path / "race"
    # enough seeds that the rest cannot all finish between the first journal line and the
    # signal even when this test process is starved (8 seeds of ~0.05 s did once, under load)
    seeds = 40
    argv = [sys.executable, "-m", "bench.cli", "race", "--tasks", "mlp_regression",
            "--backends", "numpy", "--seeds", str(seeds), "--threads", "1", "--out", str(out),
            "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / ".work" / "numpy_mlp_regression.runs.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, getattr(signal, signum))
    _, err = proc.communicate(timeout=120)
    first = json.loads((out / RAW).read_text())
    assert first["partial"] and first["pending"] == [["mlp_regression", "numpy"]]
    load(out)  # a valid race.json
    if signum == "SIGKILL":  # nothing ran after the kill: the journal holds the seeds
        assert proc.returncode == -signal.SIGKILL
        done = {r["seed"]: r for r in read_journal(journal)}
    else:
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        done = {r["seed"]: r for r in first["runs"]}
        assert "Partial race" in (out / "REPORT.md").read_text()
    assert 1 <= len(done) < seeds and all(r["reached"] for r in done.values())

    proc = subprocess.run([*argv, "--resume"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    final = json.loads((out / RAW).read_text())
    assert not final["partial"]
    assert sorted(r["seed"] for r in final["runs"]) == list(range(seeds))
    for r in final["runs"]:  # what finished before the interruption is kept as it was
        if r["seed"] in done:
            assert r == done[r["seed"]]
    assert not (out / ".work").exists()


# -- the race's own page, REPORT.html --------------------------------------------------------------
HOSTILE = {"reason": "<script>alert(1)</script> & co", "version": "<img src=x onerror=alert(2)>",
           "error": "</table><script>alert(3)</script>"}


def test_the_race_page_holds_the_tables_and_a_figure_with_every_field_escaped(tmp_path):
    pytest.importorskip("plotly")
    from bench.race.html import _plotly, task_figure
    from bench.race.report import entries

    doc = _doc(_fabricated())
    doc["tasks"]["mlp_regression"]["reason"] = HOSTILE["reason"]
    doc["groups"][0]["version"] = HOSTILE["version"]
    doc["runs"][6]["error"] = HOSTILE["error"]
    doc.update(partial=True, pending=[["mlp_regression", "torch"]])
    (tmp_path / RAW).write_text(json.dumps(doc))
    assert bench.cli.main(["race", "--report", str(tmp_path)]) == 0
    page = (tmp_path / "REPORT.html").read_text()
    body = page[page.index("</head>"):]
    for text in HOSTILE.values():  # shown, escaped, never markup
        assert text not in body and html.escape(text, quote=False) in body
    assert body.count("<script") == 2  # the figure's and the sort script, nothing else
    assert "<b>Partial race</b>" in body and "mlp_regression torch" in body
    # the table: time to target with its interval, steps with their range
    row = re.search(r"<tr><td[^>]*>numpy reference float32</td>(.*?)</tr>", body).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:2] == ["3 [2, 4]", "120 (100-140)"]
    assert 'id="race-mlp-regression"' in body
    # the figure: numpy's warm bar at its olympic mean with the kept seeds' range, its
    # steps; torch failed (no score) and is not drawn
    loaded = load(tmp_path)
    fig = task_figure("mlp_regression", entries(loaded, "mlp_regression"), _plotly())
    traces = {(t.meta["entry"], t.meta["part"]): t for t in fig.data}
    assert set(traces) == {("numpy reference float32", p) for p in ("warm", "cold", "steps")}
    warm = traces["numpy reference float32", "warm"]
    assert list(warm.x) == [3.0] and (warm.error_x.arrayminus[0], warm.error_x.array[0]) == (
        1.0, 1.0)
    steps = traces["numpy reference float32", "steps"]
    assert list(steps.x) == [120.0] and steps.error_x.arrayminus[0] == 20.0


def test_no_page_without_plotly(tmp_path, monkeypatch):
    import bench.race.html as race_html

    (tmp_path / RAW).write_text(json.dumps(_doc(_fabricated())))
    monkeypatch.setattr(race_html, "_plotly", lambda: None)
    assert race_html.write_html(tmp_path) is None and not (tmp_path / "REPORT.html").exists()


def test_resume_needs_an_interrupted_race_of_the_same_options(tmp_path, capsys):
    base = ["race", "--tasks", "mlp_regression", "--backends", "numpy", "--resume"]
    assert bench.cli.main(base) == 2  # no --out
    assert bench.cli.main([*base, "--out", str(tmp_path)]) == 2  # no race.json there
    (tmp_path / RAW).write_text(json.dumps(_doc(_fabricated())))  # a finished race
    assert bench.cli.main([*base, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--resume needs --out" in err[0] and "finished race" in err[2]
    assert "Traceback" not in "".join(err)
