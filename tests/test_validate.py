"""The versioned results format: `problems`, `nnparity validate`, the JSON Schema."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest

from bench.cli import main as cli_main
from bench.results import write as records
from bench.results.schema import FORMAT_VERSION, CellRecord
from bench.results.validate import ENVIRONMENT, EXTRA_INFO, OPTIONAL_ENVIRONMENT, problems
from bench.timing.environment import nnparity_info

ROOT = Path(__file__).resolve().parent.parent
LATEST = ROOT / "results" / "latest"
SCHEMA = ROOT / "docs" / "results-format.schema.json"


def _doc() -> dict:
    """A document as the harness writes it: one timed cell, one calibration, one error."""
    cell = "tiny/mlp_regression[activation=tanh]/numpy/reference/cpu/float32/bs4/step"
    common = dict(task="mlp_regression", preset="tiny", backend="numpy", variant="reference",
                  device="cpu", dtype="float32", knobs={"activation": "tanh"}, threads=2)
    ok = CellRecord(cell=cell, batch_size=4, phase="step", flops=1000, flops_per_s=1e6,
                    gradcheck={"passed": True, "max_rel_err": 1e-7, "tolerance": 1e-4},
                    **common)
    err = dataclasses.replace(ok, cell=cell.replace("/step", "/forward"), phase="forward",
                              status="error", error="boom", flops_per_s=None)
    cal = records.calibration_record("numpy", "cpu", "tiny", 2, gflops=12.5, gemm_size=256)
    benches = [records.benchmark_entry(ok, [1e-3, 2e-3, 1.5e-3]),
               records.benchmark_entry(err),
               records.benchmark_entry(cal, [0.01, 0.011])]
    return {"machine_info": {"node": "x", "nnparity": nnparity_info(2)}, "commit_info": {},
            "benchmarks": benches, "datetime": "2026-01-01T00:00:00", "version": "5.3.1"}


def _roundtrip(doc: dict) -> dict:
    """Through JSON text, as a reader sees it (NaN stays NaN, as Python's json writes it)."""
    return json.loads(json.dumps(doc))


def test_a_document_the_harness_writes_is_valid_and_carries_the_environment():
    doc = _roundtrip(_doc())
    assert problems(doc, "f.json") == []
    env = doc["machine_info"]["nnparity"]
    assert env["format_version"] == FORMAT_VERSION
    for key in ENVIRONMENT[2]:
        assert key in env, key
    assert env["thread_settings"]["configured"] == 2
    # this process has numpy loaded (pandas): its BLAS and kernel are named
    assert any(lib.get("user_api") == "blas" for lib in env["blas"])


def test_the_committed_latest_run_and_baseline_are_valid():
    files = sorted(LATEST.glob("*.json")) + sorted((ROOT / "results" / "baselines").glob("*.json"))
    assert files
    for file in files:
        assert problems(json.loads(file.read_text()), str(file)) == [], file


def _corrupt(path: tuple, value) -> dict:
    doc = _roundtrip(_doc())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


CORRUPTIONS = {
    "null": None,
    "list": [1, 2, 3],
    "benchmarks string": {"benchmarks": "x"},
    "NaN sample": (("benchmarks", 0, "stats", "data", 1), math.nan),
    "negative sample": (("benchmarks", 0, "stats", "data", 0), -1e-3),
    "zero sample": (("benchmarks", 0, "stats", "data", 2), 0.0),
    "string sample": (("benchmarks", 0, "stats", "data", 2), "fast"),
    "extra_info wrong type": (("benchmarks", 0, "extra_info"), "x"),
    "extra_info list": (("benchmarks", 1, "extra_info"), [1]),
    "machine_info wrong type": (("machine_info",), "x"),
    "environment wrong type": (("machine_info", "nnparity"), [1, 2]),
    "gflops abc": (("benchmarks", 2, "extra_info", "gflops"), "abc"),
    "batch_size abc": (("benchmarks", 0, "extra_info", "batch_size"), "abc"),
    "status unknown": (("benchmarks", 0, "extra_info", "status"), "fine"),
    "phase unknown": (("benchmarks", 0, "extra_info", "phase"), "sprint"),
    "backend disagrees with id": (("benchmarks", 0, "extra_info", "backend"), "torch"),
    "cell not an id": (("benchmarks", 0, "extra_info", "cell"), "hello"),
    "stats wrong type": (("benchmarks", 0, "stats"), 3),
    "frameworks wrong type": (("machine_info", "nnparity", "frameworks"), "numpy 2"),
    "blas wrong type": (("machine_info", "nnparity", "blas"), "openblas"),
    "future version": (("machine_info", "nnparity", "format_version"), FORMAT_VERSION + 1),
    "commit_info wrong type": (("commit_info",), []),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_one_line_naming_the_file(name):
    spec = CORRUPTIONS[name]
    doc = _corrupt(*spec) if isinstance(spec, tuple) else spec
    found = problems(doc, "run/g.json")
    assert len(found) == 1, found
    assert found[0].startswith("run/g.json: ") and "\n" not in found[0]


def test_a_version_2_file_missing_an_environment_field_is_rejected_a_version_1_file_is_not():
    doc = _roundtrip(_doc())
    del doc["machine_info"]["nnparity"]["blas"]
    assert problems(doc, "f") == ["f: machine_info.nnparity.blas is missing "
                                  "(required by format version 2)"]
    del doc["machine_info"]["nnparity"]["format_version"]
    assert problems(doc, "f") == []


def test_an_ok_cell_without_samples_and_a_calibration_without_gflops_are_rejected():
    doc = _roundtrip(_doc())
    doc["benchmarks"][0]["stats"]["data"] = []
    doc["benchmarks"][0]["stats"]["rounds"] = 0
    doc["benchmarks"][2]["extra_info"]["gflops"] = None
    found = problems(doc, "f")
    assert len(found) == 2 and "no samples" in found[0] and "gflops" in found[1]


def test_checker_covers_every_cellrecord_field():
    assert set(EXTRA_INFO) == {f.name for f in dataclasses.fields(CellRecord)}


def test_json_schema_agrees_with_the_checker():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    assert schema["x-format-version"] == FORMAT_VERSION
    env = schema["$defs"]["environment"]
    assert set(env["properties"]) == {k for v in ENVIRONMENT.values() for k in v} | set(
        OPTIONAL_ENVIRONMENT)
    assert set(schema["$defs"]["extra_info"]["properties"]) == set(EXTRA_INFO)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(_roundtrip(_doc())))
    assert not list(validator.iter_errors(json.loads(next(LATEST.glob("*.json")).read_text())))
    for name, spec in CORRUPTIONS.items():
        if name in ("backend disagrees with id", "cell not an id", "NaN sample"):
            # cross-field rules only the checker can express; NaN is not JSON, and
            # JSON Schema's minimum comparisons let Python's NaN through
            continue
        doc = _corrupt(*spec) if isinstance(spec, tuple) else copy.deepcopy(spec)
        assert list(validator.iter_errors(doc)), name


def test_validate_command_exit_codes(tmp_path, capsys):
    good = tmp_path / "run"
    good.mkdir()
    (good / "numpy_mlp.json").write_text(json.dumps(_doc()))
    assert cli_main(["validate", str(good)]) == 0
    assert "1 file(s) valid" in capsys.readouterr().out
    (good / "bad.json").write_text(json.dumps({"benchmarks": "x"}))
    (good / "torn.json").write_text('{"benchmarks": [')
    assert cli_main(["validate", str(good)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "bad.json" in lines[0] and "invalid JSON" in lines[1]
    assert cli_main(["validate", str(tmp_path / "missing")]) == 2
