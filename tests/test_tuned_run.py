"""A tuned run (`nnparity run --settings`, bench/timing/tuning.py): the main matrix with one
speed setting per framework, each cell recording the setting it ran with; `best` takes
each framework's best safe setting from a settings sweep."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.options import InputError
from bench.results.validate import problems
from bench.timing import tuning
from bench.timing.matrix import (
    PLANS,
    Cell,
    Group,
    TaskConfig,
    group_from_dict,
    group_to_dict,
)
from bench.timing.watch import WorkerSpec
from impls.settings import find

ROOT = Path(__file__).resolve().parent.parent


def _cfg(task: str) -> TaskConfig:
    return TaskConfig(task, (), (), 4, (4,), "tiny")


def _group(backend: str, task: str, variants: tuple[str, ...],
           phases=("forward", "step")) -> Group:
    cells = tuple(Cell(_cfg(task), backend, v, "cpu", "float32", 4, p)
                  for v in variants for p in phases)
    return Group(backend, task, cells, ("cpu",))


def test_named_settings_parse_and_bad_ones_are_refused_with_one_line():
    chosen = tuning.parse_named("torch:channels_last, numpy:threads=1,jax:default", ())
    assert chosen["torch"].name == "channels_last" and chosen["numpy"].threads == "1"
    assert chosen["jax"] is None
    with pytest.raises(InputError, match="--backends .* leaves out"):
        tuning.parse_named("torch:channels_last,jax:default", ["torch"])
    for bad, said in [("torch", "expected BACKEND:SETTING"),
                      ("mxnet:fast", "unknown backend"),
                      ("torch:warp-speed", "declares no setting"),
                      ("torch:compile", "already times"),  # a variant of the matrix
                      ("torch:bf16", "--precisions"),  # a precision mode
                      ("torch:channels_last,torch:inference_mode", "named twice"),
                      ("jax:thunk-runtime-off", "n/a here"),
                      (",", "name at least one")]:
        with pytest.raises(InputError, match=said):
            tuning.parse_named(bad, ())


def test_a_program_setting_goes_to_the_cells_it_applies_to_and_keeps_their_ids():
    cnn = _group("torch", "cnn_classification", ("eager", "compile"))
    mlp = _group("torch", "mlp_regression", ("eager",))
    groups, notes = tuning.tune_groups([cnn, mlp], {"torch": find("torch", "channels_last")})
    tuned = [c for g in groups for c in g.cells if c.setting]
    assert {(c.config.task, c.variant) for c in tuned} == {("cnn_classification", "eager")}
    assert all(dict(c.options) == {"channels_last": True} for c in tuned)
    assert [c.id for g in groups for c in g.cells] == [c.id for g in (cnn, mlp)
                                                        for c in g.cells]
    assert notes == ["torch: channels_last on 2 cell(s)"]
    # the worker gets the options with the cell (the spec is JSON)
    again = group_from_dict(json.loads(json.dumps(group_to_dict(groups[0]))))
    assert again == groups[0]
    # a phase-bound setting only where its phase is
    groups, _ = tuning.tune_groups([mlp], {"torch": find("torch", "inference_mode")})
    assert [(c.phase, c.setting) for c in groups[0].cells] == [("forward", "inference_mode"),
                                                               ("step", "")]


def test_a_process_setting_reaches_every_cell_of_the_process_and_sets_its_threads(
        monkeypatch):
    group = _group("numpy", "mlp_regression", ("reference",))
    groups, notes = tuning.tune_groups([group], {"numpy": find("numpy", "threads=1")})
    process = groups[0].process
    assert process is not None and process.threads == "1" and process.name == "threads=1"
    assert {c.setting for c in groups[0].cells} == {"threads=1"}
    assert notes == ["numpy: threads=1 on 2 cell(s) (process-wide: every variant)"]
    again = group_from_dict(json.loads(json.dumps(group_to_dict(groups[0]))))
    assert again.process == process
    # the worker's spec, written where it runs: the setting's thread choice beats the run's
    files = SimpleNamespace(stream="s.jsonl", pytest_json="p.json")
    spec = WorkerSpec(again, "tiny", PLANS["tiny"], None, 0, False, ("fp32",))
    assert spec.to_json(files, 2)["threads"] == 1  # type: ignore[arg-type]
    assert WorkerSpec(group, "tiny", PLANS["tiny"], None, 0, False, ("fp32",)).to_json(
        files, 2)["threads"] == 2  # type: ignore[arg-type]
    # undoing a pin that is not there is said, not applied
    coretype = {"numpy": find("numpy", "blas-coretype-auto")}
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    groups, notes = tuning.tune_groups([group], coretype)
    assert groups[0].process is None and notes == [
        "numpy: blas-coretype-auto applies to no selected cell (the environment sets no "
        "OPENBLAS_CORETYPE)"]
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    groups, _ = tuning.tune_groups([group], coretype)
    assert groups[0].process.unset == ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"settings": None, "settings_from": None, **kw})


def test_best_takes_each_frameworks_best_safe_setting_from_a_sweep(tmp_path):
    from test_settings import _doc, _item

    from bench.commands.run import resolve_settings

    cnn = "standard/cnn_classification/torch/eager/cpu/float32/bs64/forward"
    mlp = "standard/mlp_regression/jax/jit/cpu/float32/bs64/step"
    items = [_item(cnn, "default", 2.0), _item(cnn, "channels_last", 1.0),
             _item(cnn, "bf16", 0.5, passed=False),
             _item(cnn, "compile", 0.4),  # faster still, but a variant the matrix times
             _item(mlp, "default", 1.0, backend="jax"),
             _item(mlp, "unroll=2", 1.0, backend="jax")]
    doc = _doc(items=[i | {"environment": f"{i['backend']}:x", "device": "cpu"}
                      for i in items])
    (tmp_path / "settings.json").write_text(json.dumps(doc))
    chosen, source, notes = resolve_settings(_args(settings="best", settings_from=str(tmp_path)),
                                             ("torch", "jax", "numpy"))
    # never the faster bf16, which disagrees, and the usable one, not the faster variant
    assert chosen["torch"].name == "channels_last"
    assert chosen["jax"] is None and chosen["numpy"] is None
    assert source.startswith(f"best of {tmp_path}")
    assert notes[0] == "numpy: not in the sweep; defaults"
    assert notes[1] == ("the sweep ran at the tiny preset, this run is quick: a setting's "
                        "speed-up is specific to the shapes it was swept at")
    assert notes[2].startswith("the sweep ran on 'x', this is ")  # another processor
    with pytest.raises(InputError, match="no settings sweep results"):
        resolve_settings(_args(settings="best", settings_from=str(tmp_path / "none")), ("torch",))
    with pytest.raises(InputError, match="--settings-from is for --settings best"):
        resolve_settings(_args(settings_from=str(tmp_path)), ("torch",))


def test_a_tuned_run_records_its_settings_and_the_report_and_compare_say_so(tmp_path):
    """End to end on the tiny CNN: torch with channels_last (agreement checked) and numpy
    with one BLAS thread in its own process."""
    out = tmp_path / "tuned"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--preset", "tiny", "--backends",
         "torch,numpy", "--variants", "eager,reference", "--tasks", "cnn_classification",
         "--phases", "forward", "--rounds", "1", "--extra-rounds", "0",
         "--settings", "torch:channels_last,numpy:threads=1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "tuned (named): numpy: threads=1 on 1 cell(s) (process-wide" in proc.stderr
    for name, setting, threads in (("torch", "channels_last", None), ("numpy", "threads=1", 1)):
        doc = json.loads((out / f"{name}_cnn_classification.json").read_text())
        assert problems(doc, name) == []
        assert doc["nnparity_run"]["settings"] == {"numpy": "threads=1",
                                                   "torch": "channels_last",
                                                   "source": "named"}
        cells = [b["extra_info"] for b in doc["benchmarks"]
                 if b["extra_info"]["phase"] == "forward"]
        assert [c["setting"] for c in cells] == [setting]
        assert cells[0]["status"] == "ok" and cells[0]["gradcheck"]["passed"] is True
        if threads:
            assert cells[0]["threads"] == threads
    report = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    text = (out / "REPORT.md").read_text()
    assert "**Tuned run**" in text and "torch `channels_last`" in text
    from bench.regress.compare import compare_runs, load_run

    cmp = compare_runs(load_run(out), load_run(out))
    assert not cmp.warnings  # the same settings on both sides
    default = load_run(out)
    default.attrs["settings"] = {}
    assert "different speed settings (baseline: defaults; current: numpy threads=1, torch " \
           "channels_last)" in compare_runs(default, load_run(out)).warnings[-1]


def test_a_tuned_run_is_refused_as_a_baseline(tmp_path, capsys):
    from test_noise import _report_run

    import bench.cli

    run = tmp_path / "run"
    run.mkdir()
    _report_run(run, {"numpy": 1.0e-3, "torch": 2.0e-3})
    for f in run.glob("*.json"):
        doc = json.loads(f.read_text())
        doc["nnparity_run"] = {"rounds": 2, "order_seed": 0,
                               "settings": {"torch": "channels_last", "source": "named"}}
        f.write_text(json.dumps(doc))
    argv = ["baseline", "update", str(run), "--dir", str(tmp_path / "baselines")]
    assert bench.cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "is a tuned run (torch channels_last)" in err and "Traceback" not in err
    assert not (tmp_path / "baselines").exists() or not any((tmp_path / "baselines").iterdir())
