"""Fault injection on files and options (issue 11): corrupted and wrong-typed results
files, non-finite and out-of-range numbers, planted links and traversal names, output
paths that cannot be written, a torn history. Every bad input ends in exit 2 with one
line naming what is wrong, nothing half-written is left, nothing outside the run
directory is touched. The runner's faults (locks, signals, a full disk) are in
tests/test_faults_run.py."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.options import OutputError
from bench.regress import history
from bench.results import validate
from bench.results import write as records
from bench.results.read import LoadError, load_run
from bench.results.schema import CellRecord, cell_id

ROOT = Path(__file__).resolve().parent.parent


def _cell(backend: str, phase: str, bs: int = 16) -> str:
    return cell_id("quick", "mlp_regression[activation=tanh]", backend, "eager", "cpu",
                   "float32", bs, phase)


def harness_doc(backend: str, scale: float = 1.0, seed: int = 0) -> dict:
    """A results document as the harness writes it (records.benchmark_entry), so the
    validator is checked against the real writer, not a hand-made imitation."""
    import numpy as np

    rng = np.random.default_rng(seed)
    benches = []
    for phase in ("forward", "backward", "step"):
        rec = CellRecord(cell=_cell(backend, phase), task="mlp_regression", preset="quick",
                         backend=backend, variant="eager", device="cpu", dtype="float32",
                         batch_size=16, phase=phase, knobs={"activation": "tanh"}, flops=1000,
                         flops_per_s=1e6, gradcheck={"passed": True, "max_rel_err": 1e-7,
                                                     "tolerance": 1e-4, "error": ""},
                         threads=2, warmup_calls=2, warmup_stable=True, build_s=0.1)
        samples = list(scale * 1e-3 * (1 + 0.02 * rng.standard_normal(12)))
        benches.append(records.benchmark_entry(rec, samples))
    cal = records.calibration_record(backend, "cpu", "quick", 2, variant="eager", gflops=50.0,
                                     gemm_size=512, flops=2 * 512**3)
    benches.append(records.benchmark_entry(cal, [2e-3] * 6))
    err = CellRecord(cell=_cell(backend, "step", 64), task="mlp_regression", preset="quick",
                     backend=backend, variant="eager", device="cpu", dtype="float32",
                     batch_size=64, phase="step", status="error", error="RuntimeError: x")
    benches.append(records.benchmark_entry(err))
    machine = {"node": "n", "cpu": {"brand_raw": "fake"},
               "nnparity": {"fingerprint": "abc123", "cpu": "fake", "gpu": "", "cores": 2,
                            "threads": 2, "frameworks": {"numpy": "2"}, "git_commit": "c0ffee",
                            "date": "2025-01-01T00:00:00+00:00", "python": "3.12"}}
    return {"machine_info": machine, "commit_info": {"id": "c0ffee"}, "benchmarks": benches,
            "datetime": "2025-01-01T00:00:00+00:00", "version": "5.1.0"}


def write_doc(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for i, backend in enumerate(("numpy", "torch")):
        write_doc(run / f"{backend}_mlp_regression.json", harness_doc(backend, seed=i))
    return run


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def cli_exit(argv: list[str]) -> int:
    """bench.cli.main in-process; argparse's own errors arrive as SystemExit."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


# -- 5. corrupted and wrong-typed results files ------------------------------------------

def _nan_sample(doc):
    doc["benchmarks"][0]["stats"]["data"][3] = math.nan


def _negative(doc):
    doc["benchmarks"][1]["stats"]["data"][0] = -1e-3


def _zero(doc):
    doc["benchmarks"][2]["stats"]["data"] = [0.0] * 5


def _set(path: list, value):
    def corrupt(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return corrupt


CORRUPTIONS = {
    "null": (lambda doc: None, "document"),
    "list": (lambda doc: [1, 2, 3], "document"),
    "benchmarks-string": (_set(["benchmarks"], "x"), "benchmarks"),
    "nan-sample": (_nan_sample, "stats.data[3]"),
    "negative-time": (_negative, "stats.data[0]"),
    "zero-time": (_zero, "stats.data[0]"),
    "extra_info-string": (_set(["benchmarks", 0, "extra_info"], "x"), "extra_info"),
    "machine_info-list": (_set(["machine_info"], [1]), "machine_info"),
    "nnparity-string": (_set(["machine_info", "nnparity"], "x"), "machine_info.nnparity"),
    "gflops-abc": (_set(["benchmarks", 3, "extra_info", "gflops"], "abc"), "gflops"),
    "batch_size-abc": (_set(["benchmarks", 0, "extra_info", "batch_size"], "abc"),
                       "batch_size"),
    "batch_size-bool": (_set(["benchmarks", 0, "extra_info", "batch_size"], True),
                        "batch_size"),
    "stats-string": (_set(["benchmarks", 0, "stats"], "fast"), "stats"),
    "data-string": (_set(["benchmarks", 0, "stats", "data"], "1,2"), "stats.data"),
    "knob-number": (_set(["benchmarks", 0, "extra_info", "knobs"], {"activation": 1}),
                    "extra_info.knobs"),
    "cell-garbage": (_set(["benchmarks", 0, "extra_info", "cell"], "a/b"), "extra_info.cell"),
}


def corrupted(doc: dict, how: str):
    fn, _ = CORRUPTIONS[how]
    doc = copy.deepcopy(doc)
    out = fn(doc)
    return doc if out is None and how != "null" else out


def test_what_the_harness_writes_is_valid() -> None:
    assert validate.problems(harness_doc("numpy"), "f.json") == []
    # and after a JSON round trip (NaN stats of error cells included)
    doc = json.loads(json.dumps(harness_doc("numpy")))
    assert validate.problems(doc, "f.json") == []


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_a_corrupt_results_file_names_file_and_field(how: str) -> None:
    problems = validate.problems(corrupted(harness_doc("numpy"), how), "run/x.json")
    assert problems, how
    assert all(p.startswith("run/x.json") for p in problems)
    assert CORRUPTIONS[how][1] in problems[0], problems


def test_problems_lists_every_problem_one_line_each() -> None:
    doc = harness_doc("numpy")
    doc["benchmarks"][0]["stats"]["data"][0] = -1.0
    doc["benchmarks"][1]["extra_info"]["batch_size"] = "abc"
    doc["benchmarks"][3]["extra_info"]["gflops"] = math.inf
    found = validate.problems(doc, "f.json")
    assert len(found) == 3 and all("\n" not in p for p in found)
    # each line names the benchmark (by its cell id) and the field
    cells = [b["extra_info"]["cell"] for b in doc["benchmarks"]]
    assert f"{cells[0]}: stats.data[0]" in found[0]
    assert f"{cells[1]}: extra_info.batch_size" in found[1]
    assert f"{cells[3]}: extra_info.gflops" in found[2]


@pytest.mark.parametrize("how", ["null", "list", "benchmarks-string", "nan-sample",
                                 "negative-time", "zero-time", "extra_info-string",
                                 "machine_info-list", "gflops-abc", "batch_size-abc"])
def test_compare_refuses_a_corrupt_file_in_a_run_with_several(how, run_dir, capsys) -> None:
    bad = run_dir / "torch_mlp_regression.json"
    write_doc(bad, corrupted(json.loads(bad.read_text()), how))
    assert cli_exit(["compare", str(run_dir), str(run_dir)]) == 2
    err = one_line_error(capsys)
    assert str(bad) in err and CORRUPTIONS[how][1].split(".")[0] in err


@pytest.mark.parametrize("how", ["negative-time", "nan-sample"])
def test_baseline_update_writes_nothing_from_a_corrupt_run(how, run_dir, tmp_path,
                                                           capsys) -> None:
    bad = run_dir / "numpy_mlp_regression.json"
    write_doc(bad, corrupted(json.loads(bad.read_text()), how))
    baselines = tmp_path / "baselines"
    assert cli_exit(["baseline", "update", str(run_dir), "--dir", str(baselines)]) == 2
    assert str(bad) in one_line_error(capsys)
    assert not baselines.exists()


def test_report_refuses_zero_times(run_dir, capsys) -> None:
    bad = run_dir / "numpy_mlp_regression.json"
    write_doc(bad, corrupted(json.loads(bad.read_text()), "zero-time"))
    assert cli_exit(["report", str(run_dir), "--no-plots"]) == 2
    assert "must be a positive finite number of seconds" in one_line_error(capsys)
    assert not (run_dir / "REPORT.md").exists()


def test_deeply_nested_json_is_one_line(run_dir, capsys) -> None:
    (run_dir / "torch_mlp_regression.json").write_text("[" * 200_000 + "]" * 200_000)
    assert cli_exit(["compare", str(run_dir), str(run_dir)]) == 2
    assert "nested" in one_line_error(capsys)
    shallow = {"benchmarks": [], "machine_info": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
        [1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}
    assert "nested" in validate.problems(shallow, "f.json")[0]


def test_a_fifo_named_json_does_not_hang_the_reader(run_dir, capsys) -> None:
    fifo = run_dir / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(LoadError, match="not a regular file"):
        load_run(run_dir)
    assert cli_exit(["report", str(run_dir), "--no-plots"]) == 2
    assert "pipe.json" in one_line_error(capsys)


def test_other_formats_beside_results_are_still_skipped(run_dir) -> None:
    (run_dir / "summary.json").write_text(json.dumps({"cells": 3}))
    (run_dir / "github.json").write_text(json.dumps([{"name": "x", "value": 1}]))
    assert len(load_run(run_dir)) == 10


# -- 6. numbers that switch off guards ----------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["run", "--timeout", "nan"], "--timeout"),
    (["run", "--timeout", "-1"], "--timeout"),
    (["run", "--budget", "nan"], "--budget"),
    (["run", "--budget", "inf"], "--budget"),
    (["run", "--seed", "-1"], "--seed"),
    (["run", "--seed", str(2**32)], "--seed"),
    (["run", "--min-rounds", "0"], "--min-rounds"),
    (["run", "--threads", "0"], "--threads"),
    (["gradcheck", "--threads", "0"], "--threads"),
    (["gradcheck", "--steps", "-1"], "--steps"),
    (["train", "--task", "mlp_regression", "--threads", "-2"], "--threads"),
    (["train", "--task", "mlp_regression", "--steps", "0"], "--steps"),
    (["export", "--task", "mlp_regression", "--seed", "-5", "--out", "x.npz"], "--seed"),
    (["train", "--task", "mlp_regression", "--set", "lr=nan"], "lr"),
    (["train", "--task", "mlp_regression", "--set", "lr=-1"], "lr"),
    (["train", "--task", "mlp_regression", "--set", "lr=inf"], "lr"),
    (["export", "--task", "mlp_regression", "--set", "hidden=99999999999", "--out", "x.npz"],
     "hidden"),
    (["export", "--task", "mlp_regression", "--set", "hidden=100000", "--out", "x.npz"],
     "parameters"),
    (["export", "--task", "mlp_regression", "--set", "data=friedman", "--set", "n_samples=1",
      "--out", "x.npz"], "n_samples"),
    (["export", "--task", "mlp_regression", "--set", "seed=-3", "--out", "x.npz"], "seed"),
    (["compare", "a", "b", "--factor", "nan"], "--factor"),
    (["compare", "a", "b", "--alpha", "inf"], "--alpha"),
    (["history", "--factor", "nan"], "--factor"),
])
def test_every_numeric_option_is_checked_the_same_way(argv, words, tmp_path, capsys,
                                                      monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_exit(argv) == 2
    assert words in one_line_error(capsys)
    assert not list(tmp_path.iterdir())  # nothing written


# -- 4. planted links and traversal names in `report` -------------------------------------

def test_report_replaces_a_planted_link_instead_of_writing_through_it(run_dir, tmp_path,
                                                                      capsys) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("bars_mlp_regression.png", "REPORT.md"):
        (run_dir / name).symlink_to(victim)
    assert cli_exit(["report", str(run_dir)]) == 0
    assert victim.read_text() == "precious"
    for name in ("bars_mlp_regression.png", "REPORT.md"):
        assert not (run_dir / name).is_symlink() and (run_dir / name).stat().st_size > 0
    assert (run_dir / "bars_mlp_regression.png").read_bytes()[:4] == b"\x89PNG"


def test_a_traversal_task_name_writes_nothing_outside_the_run(tmp_path, capsys) -> None:
    run = tmp_path / "a" / "b" / "run"
    doc = harness_doc("numpy")
    for bench in doc["benchmarks"]:
        bench["extra_info"]["task"] = "x/../../../evil"
    write_doc(run / "numpy_x.json", doc)
    before = {p for p in tmp_path.rglob("*") if run not in p.parents}
    assert cli_exit(["report", str(run)]) == 0
    after = {p for p in tmp_path.rglob("*") if run not in p.parents}
    assert after == before
    assert not list(tmp_path.rglob("evil.png"))
    assert [p.name for p in run.glob("bars_*.png")] == ["bars_x_evil.png"]


# -- 8. output paths that cannot be written -----------------------------------------------

def _no_temp_left(*dirs: Path) -> None:
    for d in dirs:
        if d.is_dir():
            assert not [p for p in d.iterdir() if p.name.endswith(".tmp")], list(d.iterdir())


@pytest.mark.parametrize("where", ["directory", "proc", "under-a-file"])
def test_unwritable_output_files_are_one_line(where, run_dir, tmp_path, capsys) -> None:
    target = {"directory": tmp_path, "proc": Path("/proc/nnparity-x.json"),
              "under-a-file": run_dir / "numpy_mlp_regression.json" / "x.json"}[where]
    runs = [
        ["compare", str(run_dir), str(run_dir), "--out", str(target)],
        ["baseline", "github", str(run_dir), "--out", str(target)],
        ["gradcheck", "--tasks", "mlp_regression", "--backends", "numpy",
         "--json", str(target)],
        ["history", "--add", str(run_dir), "--file", str(target), "--no-plot"],
    ]
    if where != "directory":  # --dir names a directory; a file's place is the fault here
        runs.append(["baseline", "update", str(run_dir), "--dir", str(target)])
    for argv in runs:
        assert cli_exit(argv) == 2, argv
        assert "cannot" in one_line_error(capsys), argv
    _no_temp_left(tmp_path, run_dir)


def test_write_text_atomic_leaves_no_temp_file_on_a_full_disk(tmp_path, monkeypatch) -> None:
    target = tmp_path / "x.json"
    target.write_text("old")

    def full(_fh):
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        records.write_atomic(target, full)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.json"]


def _read_only_mount_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True).returncode == 0


@pytest.mark.skipif(not _read_only_mount_works(), reason="needs unshare for a read-only mount")
def test_report_on_a_read_only_run_is_one_line(run_dir) -> None:
    # chmod does not stop root: a read-only bind mount in a private namespace does
    script = (f"mount --bind {run_dir} {run_dir} && mount -o remount,ro,bind {run_dir} && "
              f"{sys.executable} -m bench.cli report {run_dir}")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "Read-only" in lines[0]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "numpy_mlp_regression.json", "torch_mlp_regression.json"]


# -- 9. a torn history ----------------------------------------------------------------------

def test_history_drops_a_row_truncated_mid_line_and_never_writes_it_back(run_dir, tmp_path,
                                                                         capsys) -> None:
    csv = tmp_path / "history.csv"
    assert cli_exit(["history", "--add", str(run_dir), "--file", str(csv), "--no-plot"]) == 0
    whole = csv.read_text()
    rows = whole.splitlines()
    csv.write_text(whole + rows[1][: len(rows[1]) // 2])  # an append cut short
    df = history.read_history(csv)
    assert len(df) == len(rows) - 1 and "incomplete" in capsys.readouterr().err
    other = tmp_path / "other"
    doc = harness_doc("jax", seed=5)
    doc["machine_info"]["nnparity"]["git_commit"] = "beef"
    write_doc(other / "jax_mlp_regression.json", doc)
    assert cli_exit(["history", "--add", str(other), "--file", str(csv), "--no-plot"]) == 0
    text = csv.read_text()
    assert text.startswith(whole) or set(whole.splitlines()) <= set(text.splitlines())
    assert rows[1][: len(rows[1]) // 2] not in [line for line in text.splitlines()
                                               if line not in whole.splitlines()]
    assert len(history.read_history(csv)) == len(rows) - 1 + 4  # 3 phases + calibration


def test_history_refuses_non_numeric_medians(run_dir, tmp_path, capsys) -> None:
    csv = tmp_path / "history.csv"
    assert cli_exit(["history", "--add", str(run_dir), "--file", str(csv), "--no-plot"]) == 0
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[2].split(",")
    fields[header.index("median_s")] = "abc"
    lines[2] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")
    before = csv.read_text()
    assert cli_exit(["history", "--file", str(csv), "--plots", str(tmp_path / "p")]) == 2
    err = one_line_error(capsys)
    assert "line 3" in err and "median_s" in err
    assert csv.read_text() == before and not (tmp_path / "p").exists()


def test_history_plots_replace_planted_links(run_dir, tmp_path, capsys) -> None:
    csv, plots = tmp_path / "history.csv", tmp_path / "plots"
    assert cli_exit(["history", "--add", str(run_dir), "--file", str(csv), "--no-plot"]) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    plots.mkdir()
    name = "quick_mlp_regression_activation=tanh_step.png"
    (plots / name).symlink_to(victim)
    assert cli_exit(["history", "--file", str(csv), "--plots", str(plots)]) == 0
    assert victim.read_text() == "precious" and not (plots / name).is_symlink()

