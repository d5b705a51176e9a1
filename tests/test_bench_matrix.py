"""The benchmark matrix: cell ids, sweeps, filters, grouping. No framework needed."""

from __future__ import annotations

import pytest

from bench.results.schema import calibration_id, parse_cell_id
from bench.timing.matrix import (
    PLANS,
    MatrixError,
    Selection,
    build_groups,
    group_from_dict,
    group_to_dict,
    keyword_matcher,
    task_configs,
)

# what the worker would report for two backends, without importing them
DESCRIBED = {
    "numpy": {"installed": True, "variants": ["reference"], "devices": ["cpu"],
              "supports": {}},
    "torch": {"installed": True, "variants": ["eager", "compile", "native"],
              "devices": ["cpu"], "supports": {}},
    "jax": {"installed": False, "error": "backend 'jax' is not installed"},
}


def _described(preset: str, tasks: tuple[str, ...]) -> dict:
    out = {k: dict(v) for k, v in DESCRIBED.items()}
    for task in tasks:
        for cfg in task_configs(task, preset, {}):
            rnn = task == "rnn_sequence"
            out["numpy"].setdefault("supports", {})[cfg.label] = ["reference"]
            out["torch"]["supports"][cfg.label] = ["eager", "compile"] + (["native"] if rnn
                                                                          else [])
            out["torch"].setdefault("precision_support", {})[cfg.label] = {
                v: {"cpu": ["fp32", "bf16"]} for v in out["torch"]["supports"][cfg.label]}
    return out


def _selection(**kw) -> Selection:
    base = dict(tasks=("rnn_sequence",), backends=("numpy", "torch"), variants=None,
                devices=("cpu",), dtypes=("float32",),
                phases=("forward", "backward", "step", "first_call"), preset="standard")
    base.update(kw)
    return Selection(**base)


def test_cell_id_names_every_dimension_in_the_contract_form():
    cfg = task_configs("rnn_sequence", "quick", {})[1]
    groups = build_groups(_selection(preset="quick", backends=("torch",)),
                          _described("quick", ("rnn_sequence",)))
    ids = [c.id for g in groups for c in g.cells]
    assert cfg.label == "rnn_sequence[cell=lstm]"
    assert "quick/rnn_sequence[cell=lstm]/torch/eager/cpu/float32/bs64/step" in ids
    assert calibration_id("torch", "cpu") == "gemm/torch/cpu/float32/calibration"


def test_every_cell_id_parses_back_into_its_dimensions():
    groups = build_groups(_selection(preset="quick", backends=("numpy", "torch"),
                                     dtypes=("float32", "float64"),
                                     precisions=("fp32", "bf16")),
                          _described("quick", ("rnn_sequence",)))
    cells = [c for g in groups for c in g.cells]
    assert cells
    assert {c.precision for c in cells} == {"fp32", "bf16"}
    for cell in cells:
        parsed = parse_cell_id(cell.id)
        assert (parsed.preset, parsed.config, parsed.backend, parsed.variant, parsed.device,
                parsed.dtype, parsed.batch_size, parsed.phase, parsed.precision) == (
            "quick", cell.config.label, cell.backend, cell.variant, cell.device, cell.dtype,
            cell.batch_size, cell.phase, cell.precision)
    gemm = parse_cell_id(calibration_id("jax", "cuda"))
    assert (gemm.config, gemm.backend, gemm.device, gemm.phase) == (
        "gemm", "jax", "cuda", "calibration")
    with pytest.raises(ValueError):
        parse_cell_id("not/a/cell")


def test_standard_sweeps_all_knobs_and_quick_only_the_cells():
    standard = [c.label for c in task_configs("rnn_sequence", "standard", {})]
    quick = [c.label for c in task_configs("rnn_sequence", "quick", {})]
    assert standard == [f"rnn_sequence[cell={c}]" for c in ("rnn", "lstm", "gru")]
    assert quick == standard
    assert [c.label for c in task_configs("mlp_regression", "quick", {})] == [
        "mlp_regression[activation=tanh]"]
    mlp = [c.label for c in task_configs("mlp_regression", "standard", {})]
    assert len(mlp) == 3 and all("activation=" in label for label in mlp)


def test_user_set_knobs_are_not_swept_and_appear_in_the_id():
    configs = task_configs("rnn_sequence", "standard", {"cell": "gru", "hidden": "16"})
    assert [c.label for c in configs] == ["rnn_sequence[cell=gru,hidden=16]"]


def test_batch_sweep_only_for_step_and_first_call_comes_first():
    groups = build_groups(_selection(backends=("numpy",)), _described("standard",
                                                                       ("rnn_sequence",)))
    cells = [c for c in groups[0].cells if c.config.label == "rnn_sequence[cell=lstm]"]
    assert cells[0].phase == "first_call"
    sizes = {p: sorted({c.batch_size for c in cells if c.phase == p}) for p in
             ("forward", "backward", "step")}
    assert sizes["forward"] == sizes["backward"] == [64]
    assert sizes["step"] == [16, 64, 256]


def test_quick_skips_compile_unless_asked_for():
    described = _described("quick", ("mlp_regression",))
    quick = build_groups(_selection(preset="quick", tasks=("mlp_regression",),
                                    backends=("torch",)), described)
    assert {c.variant for c in quick[0].cells} == {"eager"}
    asked = build_groups(_selection(preset="quick", tasks=("mlp_regression",),
                                    backends=("torch",), variants=("compile",)), described)
    assert {c.variant for c in asked[0].cells} == {"compile"}


def test_variants_run_in_declared_order_eager_before_compile():
    groups = build_groups(_selection(tasks=("mlp_regression",), backends=("torch",)),
                          _described("standard", ("mlp_regression",)))
    first_config = [c for c in groups[0].cells if c.config == groups[0].cells[0].config]
    assert [c.variant for c in first_config][0] == "eager"
    assert first_config[-1].variant == "compile"


def test_keyword_selects_like_pytest_and_bad_expressions_are_usage_errors():
    groups = build_groups(_selection(keyword="gru and step and not bs256"),
                          _described("standard", ("rnn_sequence",)))
    ids = [c.id for g in groups for c in g.cells]
    assert ids and all("gru" in i and i.endswith("/step") and "bs256" not in i for i in ids)
    assert keyword_matcher("LSTM")("rnn_sequence[cell=lstm]/torch/eager/cpu/float32/bs64/step")
    with pytest.raises(MatrixError, match="bad -k expression"):
        keyword_matcher("step and (")


def test_unknown_variant_names_the_choices():
    with pytest.raises(MatrixError, match="choose from compile, eager, native, reference"):
        build_groups(_selection(variants=("jitt",)), _described("standard", ("rnn_sequence",)))


def test_calibration_rides_with_each_backends_first_group_only():
    tasks = ("mlp_regression", "rnn_sequence")
    groups = build_groups(_selection(tasks=tasks), _described("standard", tasks))
    calibrated = [(g.backend, g.task) for g in groups if g.calibrate_devices]
    assert calibrated == [("numpy", "mlp_regression"), ("torch", "mlp_regression")]


def test_missing_backend_still_gets_a_group_with_its_error():
    groups = build_groups(_selection(backends=("jax",)), _described("standard",
                                                                     ("rnn_sequence",)))
    assert len(groups) == 1 and "not installed" in groups[0].error
    assert groups[0].cells and not groups[0].calibrate_devices


def test_plan_round_trips_through_json():
    import json
    from dataclasses import asdict

    from bench.timing.matrix import plan_from_dict

    for plan in PLANS.values():
        assert plan_from_dict(json.loads(json.dumps(asdict(plan)))) == plan


def test_group_round_trips_through_json_form():
    group = build_groups(_selection(backends=("torch",)),
                         _described("standard", ("rnn_sequence",)))[0]
    assert group_from_dict(group_to_dict(group)) == group


def test_a_backend_that_cannot_run_gets_strict_error_cells_under_no_variant():
    from bench.timing.matrix import NO_VARIANT

    sel = _selection(backends=("jax",), precisions=("fp32", "bf16"), dtypes=("float32",
                                                                             "float64"))
    (group,) = build_groups(sel, _described("standard", ("rnn_sequence",)))
    assert {c.variant for c in group.cells} == {NO_VARIANT}
    assert {c.precision for c in group.cells} == {"fp32"}  # a reduced mode repeats the error
    assert {c.dtype for c in group.cells} == {"float32", "float64"}
    # one error cell per (config, device, dtype, phase, batch size), as a working backend's
    numpy = build_groups(_selection(backends=("numpy",), dtypes=("float32", "float64")),
                         _described("standard", ("rnn_sequence",)))[0]
    assert sorted(c.id.replace(f"/jax/{NO_VARIANT}/", "/") for c in group.cells) == sorted(
        c.id.replace("/numpy/reference/", "/") for c in numpy.cells)
    # without strict precision in the selection, nothing of it is selected
    assert build_groups(_selection(backends=("jax",), precisions=("bf16",)),
                        _described("standard", ("rnn_sequence",))) == []
