"""REPORT.md and figures from a synthetic run directory (no framework, seeded samples)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from bench import cli
from bench.commands import report as report_command
from bench.report import markdown as report
from bench.results import write as records
from bench.results.read import load_run
from bench.timing import environment
from bench.timing.matrix import Selection, build_groups, task_configs

pytest.importorskip("matplotlib")

BACKENDS = ("numpy", "torch", "jax", "tensorflow")
VARIANT = {"numpy": "reference", "torch": "eager", "jax": "jit", "tensorflow": "function"}


ENVIRONMENT = {**environment.nnparity_info(2), "cpu": "Test CPU"}


def _write_run(path, *, speed: dict[str, float], retraces: int = 0, noisy: str = "",
               gflops: float = 50.0) -> None:
    rng = np.random.default_rng(0)
    cfgs = task_configs("mlp_regression", "standard", {"activation": "tanh"})
    described = {b: {"installed": True, "variants": [VARIANT[b]], "devices": ["cpu"],
                     "supports": {c.label: [VARIANT[b]] for c in cfgs}} for b in BACKENDS}
    sel = Selection(tasks=("mlp_regression",), backends=BACKENDS, variants=None,
                    devices=("cpu",), dtypes=("float32",),
                    phases=("forward", "backward", "step", "first_call"), preset="standard",
                    overrides={"activation": "tanh"})
    for group in build_groups(sel, described):
        stream = path / f"{group.name}.jsonl"
        cal = records.calibration_record(group.backend, "cpu", "standard", 2, variant="x",
                                         gflops=gflops, gemm_size=1024)
        records.append_stream(stream, records.benchmark_entry(cal, [0.05, 0.05, 0.05]))
        for cell in group.cells:
            base = 1e-3 * cell.batch_size / 64 / speed[cell.backend]
            if cell.phase == "first_call":
                base *= 1000
            spread = 0.5 if cell.backend == noisy else 0.01
            samples = list(base * (1 + spread * rng.random(20)))
            rec = records.record_for(
                cell, "standard", 2, flops=10**6, retraces=retraces if cell.backend == "jax"
                else 0, gradcheck={"passed": True, "max_rel_err": 1e-7, "tolerance": 1e-4})
            records.append_stream(stream, records.benchmark_entry(rec, samples))
        records.finish_group(group, "standard", path / f"{group.name}.json", path / "none",
                             stream, records.default_machine_info(ENVIRONMENT), "", 2)
        stream.unlink()


def test_report_names_every_backend_and_writes_four_figures(tmp_path):
    _write_run(tmp_path, speed={"numpy": 1.0, "torch": 2.0, "jax": 4.0, "tensorflow": 0.5})
    rc = report_command.main(argparse.Namespace(run_dir=str(tmp_path), no_plots=False))
    assert rc == 0
    text = (tmp_path / "REPORT.md").read_text()
    for backend in BACKENDS:
        assert f"{backend}/" in text
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert {"bars_mlp_regression.png", "throughput.png", "gradient_error.png",
            "first_call.png"} <= set(pngs)
    assert all((tmp_path / p).stat().st_size > 10_000 for p in pngs)
    assert "Test CPU" in text


def test_tidy_computes_speedup_and_percent_of_peak(tmp_path):
    _write_run(tmp_path, speed={"numpy": 1.0, "torch": 2.0, "jax": 4.0, "tensorflow": 0.5})
    df = report.tidy(load_run(tmp_path))
    step = df[(df["phase"] == "step") & (df["batch_size"] == 256)].set_index("backend")
    assert step.loc["jax", "speedup"] == pytest.approx(4.0, rel=0.02)
    assert step.loc["tensorflow", "speedup"] == pytest.approx(0.5, rel=0.02)
    expected = 100 * 10**6 / step.loc["numpy", "median"] / 50e9
    assert step.loc["numpy", "pct_peak"] == pytest.approx(expected)


def test_flags_impossible_speed_noise_and_retraces(tmp_path):
    _write_run(tmp_path, speed={"numpy": 1.0, "torch": 1.0, "jax": 1.0, "tensorflow": 1.0},
               retraces=2, noisy="torch", gflops=1e-3)
    flags = report.flags(report.tidy(load_run(tmp_path)))
    text = " ".join(flags["flag"])
    assert "exceeds the measured peak" in text
    assert any("torch/" in c for c in flags[flags["flag"].str.startswith("unstable")]["cell"])
    retraced = flags[flags["flag"].str.contains("retrace")]["cell"]
    assert len(retraced) > 0 and all("/jax/" in c for c in retraced)


def test_missing_run_dir_is_a_usage_error(tmp_path, capsys):
    rc = cli.main(["report", str(tmp_path / "nope"), "--no-plots"])
    assert rc == 2
    assert "not a run directory" in capsys.readouterr().err
