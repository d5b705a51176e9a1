"""`nnparity run` end to end on the NumPy backend, tiny preset: files, records, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.read import load_run

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", "run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, bad", [
    (["--backends", "numpi"], "'numpi'"),
    (["--phases", "fwd"], "'fwd'"),
    (["--preset", "huge"], "'huge'"),
    (["--devices", "tpu"], "'tpu'"),
    (["--tasks", "mlp"], "'mlp'"),
    (["--set", "colour=red"], "'colour'"),
    (["-k", "step and ("], "-k"),
])
def test_bad_arguments_exit_2_with_one_line(args, bad, tmp_path):
    proc = _run(*args, "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0]
    assert not (tmp_path / "run").exists()


def test_numpy_tiny_run_writes_raw_json_per_group(tmp_path):
    out = tmp_path / "run"
    proc = _run("--preset", "tiny", "--backends", "numpy", "--tasks", "mlp_regression",
                "--phases", "step,first_call", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "[2/3]" in proc.stderr and "ETA" in proc.stderr  # progress lines
    doc = json.loads((out / "numpy_mlp_regression.json").read_text())
    cells = {b["extra_info"]["cell"]: b for b in doc["benchmarks"]}
    assert set(cells) == {
        "gemm/numpy/cpu/float32/calibration",
        "tiny/mlp_regression[activation=tanh]/numpy/reference/cpu/float32/bs4/step",
        "tiny/mlp_regression[activation=tanh]/numpy/reference/cpu/float32/bs4/first_call",
    }
    step = cells["tiny/mlp_regression[activation=tanh]/numpy/reference/cpu/float32/bs4/step"]
    assert step["extra_info"]["status"] == "ok"
    assert len(step["stats"]["data"]) == step["stats"]["rounds"] >= 3
    assert step["extra_info"]["flops"] > 0 and step["extra_info"]["flops_per_s"] > 0
    assert step["extra_info"]["gradcheck"]["passed"] is True
    first = cells["tiny/mlp_regression[activation=tanh]/numpy/reference/cpu/float32/bs4/first_call"]
    assert first["stats"]["rounds"] == 1
    # the first first_call of a variant in a process pays the compiler's start-up apart
    assert first["extra_info"]["compiler_startup_s"] > 0
    assert step["extra_info"]["compiler_startup_s"] is None
    assert cells["gemm/numpy/cpu/float32/calibration"]["extra_info"]["gflops"] > 0
    # every reader prints pytest-benchmark's own statistics for the raw file
    run = load_run(out)
    for row in run.itertuples():
        raw = row.raw["stats"]
        if row.status == "ok" and row.rounds > 1:
            assert (row.median, row.iqr, row.q1, row.q3) == (
                raw["median"], raw["iqr"], raw["q1"], raw["q3"]), row.cell
    info = doc["machine_info"]["nnparity"]
    assert info["threads"] >= 1 and "numpy" in info["frameworks"] and info["fingerprint"]


def test_a_hung_group_is_killed_and_recorded_and_the_run_goes_on(tmp_path):
    out = tmp_path / "run"
    proc = _run("--preset", "tiny", "--backends", "numpy", "--tasks",
                "mlp_regression,cnn_classification", "--phases", "step", "--timeout", "0.01",
                "--out", str(out), "--no-gradcheck")
    assert "timed out" in proc.stderr, proc.stderr
    for name in ("numpy_mlp_regression.json", "numpy_cnn_classification.json"):
        doc = json.loads((out / name).read_text())
        assert doc["benchmarks"], name
        assert all(b["extra_info"]["status"] == "error" and "timed out" in
                   b["extra_info"]["error"] for b in doc["benchmarks"])


def test_a_run_without_agreement_checks_does_not_claim_agreement(tmp_path):
    proc = _run("--preset", "tiny", "--backends", "numpy", "--tasks", "mlp_regression",
                "--phases", "step", "--out", str(tmp_path / "run"), "--no-gradcheck")
    assert proc.returncode == 0, proc.stderr
    assert "every cell ran (agreement not checked: --no-gradcheck)" in proc.stderr
    assert "agreed" not in proc.stderr


def test_the_compiler_start_up_is_paid_once_per_variant_and_device(tmp_path):
    from bench.timing.matrix import Cell, TaskConfig
    from bench.timing.worker import Worker

    worker = Worker({"preset": "tiny", "threads": 1, "stream": str(tmp_path / "s.jsonl"),
                     "group": {"backend": "numpy"}})
    config = TaskConfig("mlp_regression", (), (), 4, (4,), "tiny")
    cell = Cell(config, "numpy", "reference", "cpu", "float32", 4, "first_call")
    first = worker.warm_compiler(cell)
    assert first is not None and first > 0
    assert worker.warm_compiler(cell) is None  # paid: later configurations carry none
    assert worker.warm_compiler(Cell(config, "numpy", "reference", "cpu", "float64", 4,
                                     "first_call")) is None
    # a model with convolutions pays the library's first-convolution set-up apart too
    cnn = TaskConfig("cnn_classification", (), (), 4, (4,), "tiny")
    conv = worker.warm_compiler(Cell(cnn, "numpy", "reference", "cpu", "float32", 4,
                                     "first_call"))
    assert conv is not None and conv > 0
    assert worker.warm_compiler(Cell(cnn, "numpy", "reference", "cpu", "float32", 4,
                                     "first_call")) is None
