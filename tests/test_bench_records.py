"""Raw records: entries in pytest-benchmark's format, error entries, group assembly."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from bench.results import write as records
from bench.results.read import load_run
from bench.timing.matrix import Group, Selection, build_groups, task_configs


def _group() -> Group:
    cfg = task_configs("mlp_regression", "tiny", {})
    described = {"numpy": {"installed": True, "variants": ["reference"], "devices": ["cpu"],
                           "supports": {c.label: ["reference"] for c in cfg}}}
    sel = Selection(tasks=("mlp_regression",), backends=("numpy",), variants=None,
                    devices=("cpu",), dtypes=("float32",), phases=("forward", "step"),
                    preset="tiny")
    return build_groups(sel, described)[0]


def test_entry_with_samples_has_pytest_benchmark_stats():
    group = _group()
    rec = records.record_for(group.cells[0], "tiny", 2, flops=100)
    entry = records.benchmark_entry(rec, [3e-3, 1e-3, 2e-3, 4e-3])
    stats = entry["stats"]
    assert stats["median"] == pytest.approx(2.5e-3)
    assert stats["min"] == 1e-3 and stats["rounds"] == 4 and len(stats["data"]) == 4
    info = entry["extra_info"]
    for key in ("cell", "task", "preset", "knobs", "backend", "variant", "device", "dtype",
                "batch_size", "phase", "flops", "flops_per_s", "peak_memory_bytes",
                "memory_source", "gradcheck", "precision", "threads", "retraces", "status"):
        assert key in info, key
    assert "gflops" not in info  # calibration-only fields stay out of timed cells


def test_error_entry_has_no_samples_and_nan_stats():
    rec = records.calibration_record("torch", "cpu", "tiny", 2, status="error", error="boom")
    entry = records.benchmark_entry(rec)
    assert entry["stats"]["data"] == [] and math.isnan(entry["stats"]["median"])
    assert entry["extra_info"]["phase"] == "calibration"
    assert entry["extra_info"]["cell"] == "gemm/torch/cpu/float32/calibration"


def test_finish_group_keeps_streamed_cells_and_marks_the_rest(tmp_path):
    group = _group()
    stream = tmp_path / "g.jsonl"
    done = records.record_for(group.cells[0], "tiny", 2)
    records.append_stream(stream, records.benchmark_entry(done, [1e-3, 2e-3, 3e-3]))
    with stream.open("a") as fh:
        fh.write('{"torn": ')  # the worker was killed mid-line
    out = tmp_path / "run" / "numpy_mlp_regression.json"
    info = records.default_machine_info({"fingerprint": "abc", "threads": 2})
    doc = records.finish_group(group, "tiny", out, tmp_path / "missing.json", stream, info,
                               "group timed out after 5s (hang?)", 2)
    cells = {b["extra_info"]["cell"]: b["extra_info"] for b in doc["benchmarks"]}
    assert len(cells) == group.size
    assert cells[done.cell]["status"] == "ok"
    errors = [c for c in cells.values() if c["status"] == "error"]
    assert len(errors) == group.size - 1
    assert all("timed out" in c["error"] for c in errors)
    df = load_run(out.parent)  # the project's reader accepts what we wrote
    assert set(df["status"]) == {"ok", "error"}
    assert json.loads(out.read_text())["machine_info"]["nnparity"]["fingerprint"] == "abc"


def test_pytest_benchmark_compare_reads_our_files(tmp_path):
    pytest.importorskip("pytest_benchmark.cli")
    group = _group()
    stream = tmp_path / "g.jsonl"
    for i, cell in enumerate(group.cells[1:]):  # the first cell is left as an error entry
        rec = records.record_for(cell, "tiny", 2)
        records.append_stream(stream, records.benchmark_entry(rec, [1e-3 * (i + 1)] * 3))
    out = tmp_path / "numpy_mlp_regression.json"
    records.finish_group(group, "tiny", out, tmp_path / "none", stream,
                         records.default_machine_info({}), "crashed", 2)
    other = tmp_path / "copy.json"  # compare reads each path once
    other.write_text(out.read_text())
    proc = subprocess.run(
        [sys.executable, "-c", "from pytest_benchmark.cli import main; main()", "compare",
         str(out), str(other)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert group.cells[1].id in proc.stdout
