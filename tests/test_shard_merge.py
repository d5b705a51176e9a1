"""`run --shard K/N` and merging runs of several machines (report, compare); no framework."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench import cli
from bench.commands import report as report_command
from bench.results import write as records
from bench.results.schema import CALIBRATION
from bench.timing.matrix import Selection, build_groups, task_configs
from bench.timing.shard import shard_groups, shard_of

pytest.importorskip("matplotlib")

BACKENDS = ("numpy", "torch", "jax", "tensorflow")
TASKS = ("mlp_regression", "cnn_classification", "rnn_sequence")
VARIANTS = {"numpy": ["reference"], "torch": ["eager", "fused"], "jax": ["jit", "scan_unroll"],
            "tensorflow": ["function", "xla"]}


def _selection(backends=BACKENDS, preset="quick") -> Selection:
    return Selection(tasks=TASKS, backends=backends, variants=None, devices=("cpu",),
                     dtypes=("float32",), phases=("forward", "backward", "step", "first_call"),
                     preset=preset)


def _described(backends=BACKENDS, preset="quick", installed=BACKENDS):
    labels = [c.label for t in TASKS for c in task_configs(t, preset, {})]
    return {b: {"installed": b in installed, "variants": VARIANTS[b], "devices": ["cpu"],
                "error": "" if b in installed else "not installed",
                "supports": {lab: VARIANTS[b] for lab in labels}} for b in backends}


def _timed(groups) -> list[str]:
    return [c.id for g in groups for c in g.cells]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 12, 13])
def test_shards_cover_the_matrix_exactly_once(count):
    sel = _selection()
    full = build_groups(sel, _described())
    shards = [shard_groups(full, sel, k, count) for k in range(1, count + 1)]
    ids = [cid for shard in shards for cid in _timed(shard)]
    assert len(ids) == len(set(ids))  # no overlap
    assert set(ids) == set(_timed(full))  # nothing missing
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # the same number of groups, within one
    for shard in shards:  # each shard calibrates each backend it runs, once
        for backend in {g.backend for g in shard}:
            calibrating = [g for g in shard if g.backend == backend and g.calibrate_devices]
            assert len(calibrating) == 1


def test_shard_assignment_does_not_depend_on_what_a_machine_has_installed():
    sel = _selection()
    everything = build_groups(sel, _described())
    missing_jax = build_groups(sel, _described(installed=("numpy", "torch", "tensorflow")))
    for k in (1, 2, 3):
        a = {g.name for g in shard_groups(everything, sel, k, 3)}
        b = {g.name for g in shard_groups(missing_jax, sel, k, 3)}
        assert a == b
    assert shard_of(sel, 4) == shard_of(_selection(), 4)


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1/0", "x", "1-2", "a/b", "2"])
def test_bad_shard_is_exit_2_with_one_line(bad, capsys, tmp_path):
    rc = cli.main(["run", "--preset", "tiny", "--backends", "numpy", "--shard", bad,
                   "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--shard" in err[0]
    assert not (tmp_path / "run").exists()


def test_address_without_ray_executor_is_exit_2(capsys, tmp_path):
    rc = cli.main(["run", "--preset", "tiny", "--backends", "numpy", "--machines", "a",
                   "--out", str(tmp_path / "run")])
    assert rc == 2 and "--executor ray" in capsys.readouterr().err


# -- merging runs of several machines --------------------------------------------------------

MACHINES = {
    "aaaaaaaaaaaa": {"cpu": "Test EPYC 9654", "cores": 96, "gpu": ""},
    "bbbbbbbbbbbb": {"cpu": "Test Xeon 8480", "cores": 56, "gpu": "NVIDIA H100 80GB HBM3"},
}


def _write_run(path, fingerprint: str, *, commit: str = "c0ffee", speed: float = 1.0,
               tasks=("mlp_regression", "rnn_sequence")) -> None:
    """A synthetic numpy run (seeded samples) with this machine's fingerprint block."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(fingerprint) + int(speed * 10))
    sel = Selection(tasks=tuple(tasks), backends=("numpy",), variants=None, devices=("cpu",),
                    dtypes=("float32",), phases=("forward", "backward", "step"), preset="quick")
    labels = [c.label for t in tasks for c in task_configs(t, "quick", {})]
    described = {"numpy": {"installed": True, "variants": ["reference"], "devices": ["cpu"],
                           "supports": {lab: ["reference"] for lab in labels}}}
    machine = {"fingerprint": fingerprint, "threads": 2, "git_commit": commit,
               **MACHINES[fingerprint]}
    for group in build_groups(sel, described):
        stream = path / f"{group.name}.jsonl"
        for device in group.calibrate_devices:
            cal = records.calibration_record("numpy", device, "quick", 2, variant="x",
                                             gflops=40.0 * speed, gemm_size=512)
            records.append_stream(stream, records.benchmark_entry(cal, [0.01] * 5))
        for cell in group.cells:
            base = 1e-3 * cell.batch_size / 64 / speed
            rec = records.record_for(cell, "quick", 2, flops=10**6)
            records.append_stream(stream, records.benchmark_entry(
                rec, list(base * (1 + 0.01 * rng.random(15)))))
        records.finish_group(group, "quick", path / f"{group.name}.json", path / "none",
                             stream, records.default_machine_info(machine), "", 2)
        stream.unlink()


def test_merged_report_has_per_machine_tables_and_figures(tmp_path, capsys):
    _write_run(tmp_path / "a", "aaaaaaaaaaaa", speed=1.0)
    _write_run(tmp_path / "b", "bbbbbbbbbbbb", speed=4.0)
    out = tmp_path / "merged"
    rc = cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    text = (out / "REPORT.md").read_text()
    assert "Test EPYC 9654 (96 cores)" in text
    assert "Test Xeon 8480 (56 cores), NVIDIA H100 80GB HBM3" in text
    assert "| backend | device | M1 GFLOP/s | M2 GFLOP/s |" in text
    assert "| numpy | cpu | 40.0 | 160.0 |" in text  # each machine's own calibration
    step = [line for line in text.splitlines() if line.startswith("| step | numpy/reference")]
    assert len(step) == 4  # one row per task config (mlp + 3 recurrent cells), a column each
    m1, m2 = (float(v) for v in step[0].strip("| ").split(" | ")[2:4])
    assert m1 / m2 == pytest.approx(4.0, rel=0.05)  # machine B is four times faster
    pngs = {p.name for p in out.glob("*.png")}
    assert {"machines_mlp_regression.png", "machines_rnn_sequence.png",
            "machines_throughput.png"} <= pngs
    assert all((out / p).stat().st_size > 10_000 for p in pngs)
    assert not (tmp_path / "a" / "REPORT.md").exists()  # the runs themselves are untouched


def test_a_one_machine_report_is_unchanged(tmp_path):
    _write_run(tmp_path / "a", "aaaaaaaaaaaa")
    shutil.copytree(tmp_path / "a", tmp_path / "same")
    assert cli.main(["report", str(tmp_path / "a"), "--no-plots"]) == 0
    expected = report_command.write_report(tmp_path / "same", plots=False).read_text()
    assert (tmp_path / "a" / "REPORT.md").read_text() == expected
    assert "several machines" not in expected


def _rewrite(path, **nnparity) -> None:
    for file in path.glob("*.json"):
        doc = json.loads(file.read_text())
        doc["machine_info"]["nnparity"].update(nnparity)
        file.write_text(json.dumps(doc))


def test_merge_refuses_different_commits_and_overlapping_cells(tmp_path, capsys):
    _write_run(tmp_path / "a", "aaaaaaaaaaaa")
    _write_run(tmp_path / "b", "bbbbbbbbbbbb", commit="deadbeef")
    rc = cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--no-plots",
                   "--out", str(tmp_path / "m1")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "different commits" in err[0]
    shutil.copytree(tmp_path / "a", tmp_path / "again")  # same machine, same cells
    rc = cli.main(["report", str(tmp_path / "a"), str(tmp_path / "again"), "--no-plots",
                   "--out", str(tmp_path / "m2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "measured twice on machine aaaaaaaaaaaa" in err[0]


def test_shards_of_one_machine_merge_and_pool_calibration(tmp_path, capsys):
    _write_run(tmp_path / "s1", "aaaaaaaaaaaa", tasks=("mlp_regression",))
    _write_run(tmp_path / "s2", "aaaaaaaaaaaa", tasks=("rnn_sequence",))
    rc = cli.main(["report", str(tmp_path / "s1"), str(tmp_path / "s2"), "--no-plots",
                   "--out", str(tmp_path / "m")])
    assert rc == 0, capsys.readouterr().err
    from bench.results.machines import load_machines

    df = load_machines([tmp_path / "s1", tmp_path / "s2"])
    cal = df[df["phase"] == CALIBRATION]
    assert len(cal) == 1 and cal.iloc[0]["rounds"] == 10  # two shards' samples pooled
    assert df["cell"].is_unique


def test_compare_matches_cells_within_each_machine(tmp_path, capsys):
    for name, speed in (("base", 1.0), ("head", 1.0)):
        _write_run(tmp_path / name, "aaaaaaaaaaaa", speed=speed)
        _write_run(tmp_path / f"{name}-b", "bbbbbbbbbbbb", speed=4.0 * speed)
        for file in (tmp_path / f"{name}-b").glob("*.json"):  # one run dir, two machines
            file.rename(tmp_path / name / f"b_{file.name}")
    rc = cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "head"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and not doc["regressed"]
    machines = {c["cell"].split("]")[0].strip("[") for c in doc["cells"]}
    assert machines == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    # a machine four times slower than the other would be a regression if mixed
    assert all(c["verdict"] != "regression" for c in doc["cells"])
