"""Tests for baselines, history and the github-action-benchmark export (synthetic runs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_compare import CELLS, noisy, scaled, write_run

import bench.cli
from bench.regress import baseline, history
from bench.results.read import load_run


def cli(module: object, *argv: str) -> int:
    """`nnparity baseline|history ARGV` through the CLI's bad-input handling."""
    command = module.__name__.rsplit(".", 1)[1]  # type: ignore[attr-defined]
    return bench.cli.main([command, *argv])


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run1", {c: noisy(0.01 * (i + 1), seed=i)
                                         for i, c in enumerate(CELLS)}, commit="c1")


def test_baseline_update_writes_a_loadable_pytest_benchmark_file(run_dir: Path,
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    assert cli(baseline, "update", str(run_dir), "--dir", str(root)) == 0
    path = root / "machine-a.json"
    doc = json.loads(path.read_text())
    assert doc["nnparity_baseline"]["fingerprint"] == "machine-a"
    bench = doc["benchmarks"][0]
    assert {"min", "max", "mean", "stddev", "median", "iqr", "rounds", "ops", "data"} <= set(
        bench["stats"])
    reloaded = load_run(path).set_index("cell")
    original = load_run(run_dir).set_index("cell")
    assert reloaded.loc[CELLS[0], "median"] == original.loc[CELLS[0], "median"]
    assert reloaded.loc[CELLS[0], "rounds"] == 15
    # pytest-benchmark's own compare must be able to read (and tabulate) it
    tool = shutil.which("pytest-benchmark", path=str(Path(sys.executable).parent))
    if tool:
        proc = subprocess.run([tool, "compare", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-500:]
        assert CELLS[0] in proc.stdout


def test_baseline_update_merges_cells(run_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    baseline.update_baseline(load_run(run_dir), root)
    newer = write_run(tmp_path / "run2", {CELLS[0]: noisy(0.5, seed=9)}, commit="c2")
    path, updated, kept = baseline.update_baseline(load_run(newer), root)
    merged = load_run(path).set_index("cell")
    assert updated == 4  # the cell and three calibration cells
    assert kept == len(CELLS) - 1
    assert merged.loc[CELLS[0], "median"] == pytest.approx(0.5, rel=0.05)
    assert merged.loc[CELLS[1], "median"] == pytest.approx(0.02, rel=0.05)


def test_corrupt_baseline_is_not_overwritten(run_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "baselines"
    root.mkdir()
    (root / "machine-a.json").write_text('{"benchmarks": [')
    assert cli(baseline, "update", str(run_dir), "--dir", str(root)) == 2
    assert (root / "machine-a.json").read_text() == '{"benchmarks": ['
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_baseline_check_uses_the_matching_machine(run_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "baselines"
    assert cli(baseline, "check", str(run_dir), "--dir", str(root)) == 0
    assert "no baseline for machine machine-a" in capsys.readouterr().out
    baseline.update_baseline(load_run(run_dir), root)
    slow = scaled(run_dir, tmp_path / "slow", 2.0)
    assert cli(baseline, "check", str(slow), "--dir", str(root)) == 1
    other = scaled(run_dir, tmp_path / "other", 2.0, fingerprint="machine-b")
    assert cli(baseline, "check", str(other), "--dir", str(root)) == 0
    assert "no baseline for machine machine-b" in capsys.readouterr().out


def test_github_benchmark_format(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gh" / "bench.json"
    assert cli(baseline, "github", str(run_dir), "--out", str(out)) == 0
    entries = json.loads(out.read_text())
    by_name = {e["name"]: e for e in entries}
    assert set(CELLS) <= set(by_name)
    entry = by_name[CELLS[1]]
    assert set(entry) == {"name", "unit", "value", "range", "extra"}
    assert entry["unit"] == "ms" and entry["range"].startswith("± ")
    assert entry["value"] == pytest.approx(20.0, rel=0.05)


def test_history_append_is_idempotent_and_flags(run_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "history.csv"
    first = load_run(run_dir)
    assert history.append_history(first, csv) == len(CELLS) + 3
    assert history.append_history(first, csv) == len(CELLS) + 3
    slow = load_run(scaled(run_dir, tmp_path / "slow", 2.0, commit="c2",
                           date="2025-01-02T00:00:00"))
    flags = {CELLS[0]: "regression"}
    history.append_history(slow, csv, flags)
    table = history.read_history(csv)
    assert len(table) == 2 * (len(CELLS) + 3)
    assert set(table["commit"]) == {"c1", "c2"}
    row = table[(table["commit"] == "c2") & (table["cell"] == CELLS[0])].iloc[0]
    assert row["flag"] == "regression"
    assert row["median_s"] == pytest.approx(2 * first.set_index("cell").loc[CELLS[0], "median"])


def test_history_cli_flags_against_baseline_and_plots(run_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    csv, plots = tmp_path / "h.csv", tmp_path / "plots"
    slow = scaled(run_dir, tmp_path / "slow", 2.0, commit="c2", date="2025-01-02T00:00:00")
    assert cli(history, "--add", str(run_dir), "--file", str(csv), "--no-plot") == 0
    assert cli(history, "--add", str(slow), "--against", str(run_dir), "--file", str(csv),
               "--plots", str(plots)) == 0
    table = pd.read_csv(csv, keep_default_na=False)
    flagged = table[table["flag"] == "regression"]
    assert set(flagged["cell"]) == set(CELLS) and set(flagged["commit"]) == {"c2"}
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) == 3 and all(p.stat().st_size > 1000 for p in pngs)
    assert pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_history_bad_csv_is_left_alone(run_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "h.csv"
    csv.write_text("just,some\nother,csv\n")
    assert cli(history, "--add", str(run_dir), "--file", str(csv)) == 2
    assert csv.read_text() == "just,some\nother,csv\n"
    assert str(csv) in capsys.readouterr().err
