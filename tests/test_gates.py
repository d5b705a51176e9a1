"""Gates that cannot pass by accident (issue 9).

gradcheck fails when a requested backend cannot run (unless --allow-missing);
`run` exits 1 when cells crashed, keeping every record; `run --devices cuda`
without any backend having CUDA is bad input (exit 2); compare fails when
cells the baseline timed are missing; `continuous` compares a side whose run
exited 1 and fails the gate when that side is the head.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAKE_ENV, FAKE_RECORD_SOURCE, fake_record

import impls
from bench import cli
from bench.regress import continuous
from bench.timing import environment, measure

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", "run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def tensorflow_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = impls.is_installed
    monkeypatch.setattr(impls, "is_installed",
                        lambda name: False if name == "tensorflow" else real(name))


GRADCHECK = ["gradcheck", "--backends", "numpy,tensorflow", "--tasks", "mlp_regression",
             "--set", "activation=tanh"]


def test_gradcheck_fails_when_a_requested_backend_is_missing(tensorflow_not_installed,
                                                             capsys) -> None:
    assert cli.main(GRADCHECK) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "NOT CHECKED: tensorflow (not installed)" in last and "--allow-missing" in last
    assert cli.main([*GRADCHECK, "--allow-missing"]) == 0
    assert "tensorflow (not installed) (allowed" in capsys.readouterr().out


def test_gradcheck_fails_when_a_named_device_is_missing(capsys) -> None:
    if "cuda" in impls.load("numpy").devices():
        pytest.skip("numpy never has cuda; this guards the test's own assumption")
    assert cli.main(["gradcheck", "--backends", "numpy", "--tasks", "mlp_regression",
                     "--set", "activation=tanh", "--devices", "cpu,cuda"]) == 1
    assert "NOT CHECKED: numpy cuda (no cuda device)" in capsys.readouterr().out


def test_gradcheck_jobs_check_the_same_rows_as_one_process(tmp_path, capsys) -> None:
    args = ["gradcheck", "--backends", "numpy", "--tasks", "mlp_regression,cnn_classification",
            "--dtypes", "float64,float32", "--steps", "2"]
    assert cli.main([*args, "--json", str(tmp_path / "one.json")]) == 0
    assert cli.main([*args, "--jobs", "2", "--json", str(tmp_path / "two.json")]) == 0
    out = capsys.readouterr().out
    # (rows of checked configurations; a device this machine lacks has a reason row)
    one = [r for r in json.loads((tmp_path / "one.json").read_text()) if "check" in r]
    two = [r for r in json.loads((tmp_path / "two.json").read_text()) if "check" in r]
    assert one
    key = ("check", "task", "knobs", "variant", "dtype", "tensor", "status")
    # the same rows in the same (plan) order, the same verdicts; NumPy is deterministic
    assert [tuple(r[k] for k in key) for r in two] == [tuple(r[k] for k in key) for r in one]
    assert [r["rel_err"] for r in two] == pytest.approx([r["rel_err"] for r in one], rel=1e-6)
    n = len({(r["task"], r["knobs"], r["dtype"]) for r in one})
    assert out.count(f"{n} of {n} configurations agree") == 2
    assert f"{n}/{n}" in out  # a progress count per finished configuration


def test_gradcheck_jobs_report_an_error_raised_in_a_worker() -> None:
    from bench.agreement.gradcheck import Config, run_all

    good = Config("mlp_regression", {"activation": "tanh"}, "numpy", "reference", "float64",
                  "cpu")
    bad = Config("mlp_regression", {"activation": "tanh"}, "numpy", "no-such-variant",
                 "float64", "cpu")
    done = list(run_all([good, bad], "tiny", 0, [], jobs=2, threads=1))
    assert sorted(c.variant for c in done) == ["no-such-variant", "reference"]
    assert good.status == "ok" and good.rows
    assert bad.status == "error" and "no-such-variant" in bad.reason


def test_run_with_a_crashing_backend_exits_1_and_keeps_its_records(tmp_path) -> None:
    out = tmp_path / "run"
    proc = _run("--preset", "tiny", "--backends", "numpy", "--tasks", "mlp_regression",
                "--phases", "forward", "--no-gradcheck", "--out", str(out),
                env={measure.TEST_CRASH_ENV: "numpy"})
    assert proc.returncode == 1, proc.stderr
    doc = json.loads((out / "numpy_mlp_regression.json").read_text())
    cells = [b["extra_info"] for b in doc["benchmarks"] if b["extra_info"]["phase"] in
             ("forward", "step")]
    assert len(cells) == 1 and all(c["status"] == "error" and "injected crash" in c["error"]
                                   for c in cells)
    last = proc.stderr.strip().splitlines()[-1]
    assert "1 cell(s) errored" in last and str(out) in last


def test_run_devices_cuda_without_a_gpu_is_bad_input(tmp_path) -> None:
    if environment.has_cuda():
        pytest.skip("this machine has a GPU")
    proc = _run("--preset", "tiny", "--backends", "numpy", "--tasks", "mlp_regression",
                "--devices", "cuda", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    # one error line (after the describe step's progress line), no traceback
    errors = [line for line in proc.stderr.strip().splitlines() if "error" in line]
    assert len(errors) == 1 and "device 'cuda' is not available" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_count_failures_reads_errors_and_disagreements(tmp_path) -> None:
    from bench.timing.runner import count_failures

    benches = [{"extra_info": {"status": "ok", "gradcheck": {"passed": True}}},
               {"extra_info": {"status": "ok", "gradcheck": {"passed": False}}},
               {"extra_info": {"status": "ok", "gradcheck": {"passed": None}}},
               {"extra_info": {"status": "error", "gradcheck": {}}}]
    (tmp_path / "g.json").write_text(json.dumps({"benchmarks": benches}))
    assert count_failures(tmp_path) == (1, 1)
    (tmp_path / "broken.json").write_text("{")
    assert count_failures(tmp_path) == (1, 2)


def _write_results(out: Path, cells: list[str]) -> None:
    benches = [fake_record(c, [0.01] * 5) for c in cells]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"machine_info": {"nnparity": FAKE_ENV}, "benchmarks": benches}))


def test_compare_with_a_missing_cell_exits_1(tmp_path, capsys) -> None:
    a, b = "mlp/numpy/ref/cpu/float64/bs8/step", "rnn/numpy/ref/cpu/float64/bs8/step"
    _write_results(tmp_path / "base", [a, b])
    _write_results(tmp_path / "cur", [a])
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "cur")]) == 1
    assert "1 cell(s) the baseline timed are missing" in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "cur"),
                     "--allow-missing"]) == 0


def test_continuous_compares_a_round_that_exited_1_and_says_why(tmp_path) -> None:
    script = ("import json, pathlib, sys\n"
              "out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)\n"
              "(out / 'g.json').write_text(json.dumps({'benchmarks': []}))\n"
              "print('nnparity run: done; 1 cell(s) failed gradient agreement'); sys.exit(1)\n")
    side = continuous.Side("head", "HEAD", "0" * 40, tmp_path, ())
    out = tmp_path / "r"
    _, why = continuous._run_side(side, [sys.executable, "-c", script, str(out)], out,
                                  tmp_path / "r.log")
    assert "failed gradient agreement" in why
    # exit 1 without records, or any other code, is still a failed run
    empty = tmp_path / "empty"
    with pytest.raises(continuous.ContinuousError):
        continuous._run_side(side, [sys.executable, "-c", "import sys; sys.exit(1)"], empty,
                             tmp_path / "e.log")


FAKE_RUN = '''
import json, os, pathlib, sys
''' + FAKE_RECORD_SOURCE + '''
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1])
cells = ["mlp/numpy/ref/cpu/float64/bs8/step"]
benches = [fake_record(c, [0.01, 0.0101, 0.0099, 0.01, 0.01]) for c in cells]
out.mkdir(parents=True, exist_ok=True)
(out / "g.json").write_text(json.dumps({"machine_info": {"nnparity": FAKE_ENV},
                                        "benchmarks": benches}))
if os.environ.get("FAKE_EXIT1"):
    print("nnparity run: done; 1 cell(s) failed gradient agreement, 0 cell(s) errored")
    sys.exit(1)
'''


def test_continuous_fails_when_the_head_run_fails_its_checks(tmp_path, capsys) -> None:
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "__init__.py").write_text("")
    (repo / "bench" / "cli.py").write_text(FAKE_RUN)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    base = ["continuous", "HEAD", "HEAD", "--repo", str(repo), "--repeat", "1",
            "--confirm", "0"]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main([*base, "--head-env", "FAKE_EXIT1=1"]) == 1
    captured = capsys.readouterr()
    assert "unchanged" in captured.out  # the samples were still compared
    assert "head side's run failed its checks" in captured.err
    assert "failed gradient agreement" in captured.out + captured.err
