"""nnparity settings (issue 24): the declarations, n/a on a device, the best-safe rule, a
setting that perturbs gradients, results read as untrusted input, and the CLI end to end."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

import bench.cli
import impls
from bench.agreement.check import program_rows, program_setup, summary
from bench.options import InputError
from bench.settings import analysis, report, results
from bench.settings import plan as plans
from bench.settings.sweep import FORMAT, FORMAT_VERSION
from impls.base import DEVICES, PRECISIONS
from impls.settings import DEFAULT_VARIANTS, SCOPES, SETTINGS, THREAD_CHOICES, Setting
from tasks.optim import OptimizerSpec

# --- the declarations -------------------------------------------------------------------

#: what issue 24 asks each backend to declare (names as declared)
ASKED = {
    "numpy": {"threads=1", "threads=half"},
    "torch": {"threads=1", "threads=half", "compile", "compile-fullgraph",
              "compile-reduce-overhead", "compile-max-autotune", "channels_last",
              "inference_mode", "cudnn.benchmark", "tf32", "cuda-graphs"},
    "jax": {"threads=1", "eigen-single-thread", "thunk-runtime-off", "unroll=2", "unroll=8",
            "nchw", "matmul-precision=tf32", "autotune=0", "triton-gemm-off", "no-donation"},
    "tensorflow": {"jit_compile", "onednn-off", "threads=1", "interop=1", "mixed-bf16",
                   "mixed-fp16"},
}


def test_every_backend_declares_what_the_issue_asks_for():
    assert set(SETTINGS) == set(impls.BACKENDS) == set(DEFAULT_VARIANTS)
    for backend, asked in ASKED.items():
        names = [s.name for s in SETTINGS[backend]]
        assert len(names) == len(set(names)), f"{backend}: a name declared twice"
        assert asked <= set(names), f"{backend}: missing {sorted(asked - set(names))}"


@pytest.mark.parametrize("backend", sorted(SETTINGS))
def test_declarations_are_well_formed(backend):
    for s in SETTINGS[backend]:
        assert s.backend == backend and s.what and s.devices
        assert set(s.devices) <= set(DEVICES) and s.scope in SCOPES
        assert s.precision in PRECISIONS
        if s.scope == "process":  # a process setting changes the process, nothing else
            assert (s.env or s.xla_flags or s.threads or s.unset) and not (s.variant
                                                                             or s.options)
            assert not s.threads or s.threads in THREAD_CHOICES
        else:
            assert not (s.env or s.xla_flags or s.threads or s.unset)


@pytest.mark.parametrize("backend", sorted(SETTINGS))
def test_each_setting_names_a_variant_and_options_its_backend_has(backend):
    if not impls.is_installed(backend):
        pytest.skip(f"{backend} not installed")
    loaded = impls.load(backend)
    assert loaded.variants[0] == DEFAULT_VARIANTS[backend]
    for s in SETTINGS[backend]:
        assert not s.variant or s.variant in loaded.variants, s.name
        assert {k for k, _ in s.options} <= set(loaded.program_options), s.name
        for device in s.devices:
            if s.precision != "fp32":
                assert s.precision in loaded.precision_support.get(device, ()), s.name


def test_unknown_build_option_is_a_backend_error():
    backend = impls.load("numpy")
    cfg, spec, params = program_setup("mlp_regression", "tiny", {})
    with pytest.raises(impls.BackendError, match="no build option"):
        backend.build(spec, params, variant="reference", dtype="float32", device="cpu",
                      optimizer=OptimizerSpec(), options={"channels_last": True})


def _plan(devices=("cpu",), cores=2, **kw):
    configs = plans.sweep_configs("tiny", None, {})
    return plans.build_plan("tiny", configs, list(SETTINGS), list(devices),
                            ["forward", "step"], threads=cores, cores=cores, **kw)


def test_a_setting_for_a_device_that_is_absent_is_na_never_an_item():
    plan = _plan()
    timed = {(i.cell.backend, i.setting) for items in plan.items.values() for i in items}
    for backend, declared in SETTINGS.items():
        for s in declared:
            if s.devices == ("cuda",):
                assert (backend, s.name) not in timed
                assert any(n.setting == s.name and n.backend == backend
                           and n.why == "cuda only" for n in plan.not_applicable)
    unavailable = [n for n in plan.not_applicable if n.setting == "thunk-runtime-off"]
    assert unavailable and "ignores it" in unavailable[0].why


def test_settings_apply_only_to_their_tasks_and_phases():
    plan = _plan()
    items = [i for its in plan.items.values() for i in its]
    for item in items:
        s = plan.settings.get(f"{item.cell.backend}:{item.setting}")
        if s is None:
            assert item.setting == plans.DEFAULT
            continue
        assert not s.tasks or item.cell.config.task in s.tasks
        assert not s.phases or item.cell.phase in s.phases
    inference = [i for i in items if i.setting == "inference_mode"]
    assert inference and all(i.cell.phase == "forward" for i in inference)
    assert {i.cell.config.task for i in items if i.setting == "nchw"} == {"cnn_classification"}


def test_process_settings_that_resolve_to_the_default_or_each_other_are_na():
    two = _plan(cores=2)
    na = {(n.backend, n.setting): n.why for n in two.not_applicable}
    assert na[("torch", "threads=half")].startswith("same as threads=1")
    assert "torch:threads=1" in two.environments
    eight = _plan(cores=8)
    assert {"torch:threads=1", "torch:threads=half"} <= set(eight.environments)
    assert eight.environments["torch:threads=half"].threads == 4


def test_every_process_setting_has_its_own_environment_and_program_settings_the_default():
    plan = _plan()
    for key, items in plan.items.items():
        env = plan.environments[key]
        for item in items:
            s = plan.settings.get(f"{env.backend}:{item.setting}")
            if env.name == plans.DEFAULT:
                assert s is None or s.scope == "program"
            else:
                assert item.setting == env.name and s.scope == "process"


def test_unknown_setting_and_empty_selection_are_bad_input():
    with pytest.raises(plans.SettingsError, match="unknown setting"):
        _plan(names=["warp-speed"])
    with pytest.raises(plans.SettingsError, match="no cell"):
        _plan(keyword="nothing_matches_this")


def test_round_orders_are_seeded_and_differ_between_rounds():
    plan = _plan()
    assert plans.round_orders(plan, 0, 0) == plans.round_orders(plan, 0, 0)
    first, second = plans.round_orders(plan, 0, 0), plans.round_orders(plan, 0, 1)
    assert first != second
    assert sorted(first[0]) == sorted(second[0]) == sorted(plan.items)


# --- the best-safe rule -------------------------------------------------------------------

def _item(cell, setting, median, *, passed=True, backend="torch", spread=0.005, rounds=3):
    # A seed that does not depend on PYTHONHASHSEED, and rounds whose samples are symmetric
    # about ``median``: every round's median is exactly ``median``, so the orderings the tests
    # assert (some 0.1-0.3% apart) cannot flip with the draw (a CI run once saw jax and numpy
    # 0.3% apart swap places under a hash-seeded draw).
    rng = np.random.default_rng(zlib.crc32(f"{cell}@{setting}".encode()))
    samples = []
    for _ in range(rounds):
        half = np.abs(rng.standard_normal(5))
        samples += list(median * (1 + spread * rng.permutation(np.concatenate([half, -half]))))
    return {"id": f"{cell}@{setting}", "cell": cell, "backend": backend, "task": cell,
            "phase": "step", "setting": setting, "samples": samples,
            "round_sizes": [10] * rounds, "errors": [],
            "gradcheck": None if passed is None else {"passed": passed,
                                                      "verdict": "agrees" if passed
                                                      else "disagrees"}}


def test_best_safe_is_the_fastest_agreeing_setting_beyond_noise():
    items = [_item("a", "default", 1.0), _item("a", "fast", 0.5), _item("a", "faster", 0.4),
             _item("a", "noise", 0.995),
             _item("b", "default", 1.0), _item("b", "fast", 0.6), _item("b", "faster", 0.9)]
    rows = analysis.rows(items)
    fast = next(r for r in rows if r.cell == "a" and r.setting == "fast")
    assert fast.speedup == pytest.approx(2.0, rel=0.02) and fast.low > 1.02 and not fast.noise
    assert next(r for r in rows if r.setting == "noise").noise
    assert analysis.best_in_cell([r for r in rows if r.cell == "a"]).setting == "faster"
    best = analysis.best_per_backend(rows)["torch"]
    # geometric means: fast sqrt(2.0 * 1.667) = 1.83, faster sqrt(2.5 * 1.11) = 1.67
    assert best.setting == "fast" and best.cells == 2


def test_a_setting_that_fails_agreement_is_never_best_however_fast():
    items = [_item("a", "default", 1.0), _item("a", "wrong", 0.1, passed=False),
             _item("a", "unchecked", 0.2, passed=None), _item("a", "right", 0.8)]
    rows = analysis.rows(items)
    assert analysis.best_in_cell(rows).setting == "right"
    assert analysis.best_per_backend(rows)["torch"].setting == "right"
    only_wrong = [_item("a", "default", 1.0), _item("a", "wrong", 0.1, passed=False)]
    assert analysis.best_in_cell(analysis.rows(only_wrong)) is None
    assert analysis.best_per_backend(analysis.rows(only_wrong))["torch"].setting == "default"


def test_a_setting_slower_beyond_noise_in_one_cell_is_not_the_frameworks_best():
    items = [_item("a", "default", 1.0), _item("a", "mixed", 0.5),
             _item("b", "default", 1.0), _item("b", "mixed", 1.5)]
    assert analysis.best_per_backend(analysis.rows(items))["torch"].setting == "default"


class _Perturbed:
    """A program whose gradients are 1% off: what a numerically unsafe setting does."""

    def __init__(self, program, factor=1.01):
        self._program, self._factor = program, factor

    def __getattr__(self, name):
        return getattr(self._program, name)

    def grads_to_canonical(self, grads):
        return {k: v * self._factor for k, v in self._program.grads_to_canonical(grads).items()}


def test_a_setting_that_perturbs_gradients_fails_agreement_and_is_never_best():
    cfg, spec, params = program_setup("mlp_regression", "tiny", {})
    program = impls.load("numpy").build(spec, params, variant="reference", dtype="float32",
                                        device="cpu",
                                        optimizer=OptimizerSpec(cfg.optimizer, cfg.lr))
    args = ("mlp_regression", "tiny", {}, "numpy", "reference", "float32", "cpu")
    honest = summary(program_rows(*args, program))
    perturbed = summary(program_rows(*args, _Perturbed(program)))
    assert honest["passed"] is True
    assert perturbed["passed"] is False and perturbed["verdict"] == "disagrees"
    items = [_item("a", "default", 1.0, backend="numpy"),
             {**_item("a", "perturbing", 0.3, backend="numpy"), "gradcheck": perturbed},
             {**_item("a", "honest", 0.9, backend="numpy"), "gradcheck": honest}]
    rows = analysis.rows(items)
    assert next(r for r in rows if r.setting == "perturbing").verdict == "disagrees"
    assert analysis.best_per_backend(rows)["numpy"].setting == "honest"
    text = report.render({"preset": "tiny", "rounds": 3, "budget_s": 0.1, "elapsed_s": 1.0,
                          "items": items, "settings": {}, "not_applicable": [],
                          "machine": {}, "cores": 2})
    assert "**disagrees**" in text and "never safe" in text


# --- torch and jax options ----------------------------------------------------------------

def test_torch_channels_last_and_inference_mode_agree():
    if not impls.is_installed("torch"):
        pytest.skip("torch not installed")
    import torch

    cfg, spec, params = program_setup("cnn_classification", "tiny", {})
    program = impls.load("torch").build(
        spec, params, variant="eager", dtype="float32", device="cpu",
        optimizer=OptimizerSpec(cfg.optimizer, cfg.lr),
        options={"channels_last": True, "inference_mode": True})
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
               and not p.is_contiguous() for p in program._params)
    rows = program_rows("cnn_classification", "tiny", {}, "torch", "eager", "float32", "cpu",
                        program)
    assert summary(rows)["passed"] is True


def test_jax_layout_option_overrides_the_platform_default():
    if not impls.is_installed("jax"):
        pytest.skip("jax not installed")
    cfg, spec, params = program_setup("cnn_classification", "tiny", {})
    backend = impls.load("jax")
    opt = OptimizerSpec(cfg.optimizer, cfg.lr)
    default = backend.build(spec, params, variant="jit", dtype="float32", device="cpu",
                            optimizer=opt)
    nchw = backend.build(spec, params, variant="jit", dtype="float32", device="cpu",
                         optimizer=opt, options={"layout": "nchw"})
    assert default.nhwc and not nchw.nhwc
    rows = program_rows("cnn_classification", "tiny", {}, "jax", "jit", "float32", "cpu", nchw)
    assert summary(rows)["passed"] is True
    again = backend.build(spec, params, variant="jit", dtype="float32", device="cpu",
                          optimizer=opt)
    assert again.nhwc  # the forced layout ends with its build


# --- results as untrusted input, the CLI --------------------------------------------------

def _doc(**changes):
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "preset": "tiny", "rounds": 1,
           "budget_s": 0.1, "elapsed_s": 1.0, "seed": 0, "settings": {},
           "not_applicable": [], "machine": {"cpu": "x", "cores": 2},
           "items": [_item("c", "default", 1.0, rounds=1) | {"environment": "torch:default",
                                                              "device": "cpu"}]}
    doc.update(changes)
    return doc


@pytest.mark.parametrize("bad", [
    {"format": "nnparity-race"},
    {"items": "many"},
    {"items": [{"id": "x"}]},
    {"budget_s": float("inf")},
    {"items": [_item("c", "default", 1.0, rounds=1) | {"environment": "e", "device": "cpu",
                                                        "samples": [-1.0]}]},
    {"items": [_item("c", "default", 1.0, rounds=1) | {"environment": "e", "device": "cpu",
                                                        "round_sizes": [3]}]},
    {"items": [_item("c", "default", 1.0, rounds=1) | {"environment": "e", "device": "cpu",
                                                        "gradcheck": {"passed": "yes"}}]},
    {"items": [_item("c", "default", 1.0, rounds=1) | {"environment": "e", "device": "cpu",
                                                        "blas": ["openblas"]}]},
])
def test_a_bad_results_document_is_refused_with_one_line(tmp_path, bad, capsys):
    (tmp_path / results.FILE).write_text(json.dumps(_doc(**bad)))
    with pytest.raises(InputError):
        results.load(tmp_path)
    assert bench.cli.main(["settings", "--report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "settings.json" in err


def test_report_escapes_untrusted_text(tmp_path):
    item = _item("c", "default", 1.0, rounds=1) | {"environment": "e", "device": "cpu",
                                                    "task": "<img src=x onerror=alert(1)>|"}
    (tmp_path / results.FILE).write_text(json.dumps(_doc(items=[item])))
    assert bench.cli.main(["settings", "--report", str(tmp_path)]) == 0
    text = (tmp_path / report.REPORT).read_text()
    assert "<img" not in text and "&lt;img" in text


@pytest.mark.parametrize("argv", [
    ["--settings", "warp-speed"],
    ["--backends", "numpy,nope"],
    ["-k", "and and"],
    ["--preset", "huge"],
    ["--phases", "first_call"],
])
def test_bad_input_exits_2_with_one_line(argv, tmp_path, capsys):
    code = bench.cli.main(["settings", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("nnparity settings: error")


def test_cli_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = bench.cli.main(["settings", "--preset", "tiny", "--backends", "numpy",
                           "--tasks", "mlp_regression", "--phases", "step", "--budget", "0.02",
                           "--rounds", "2", "--threads", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = results.load(out)
    by_setting = {i["setting"]: i for i in doc["items"]}
    assert set(by_setting) == {"default", "threads=1"}
    for item in by_setting.values():
        assert item["round_sizes"] and len(item["round_sizes"]) == 2
        assert item["gradcheck"]["passed"] is True  # checked in the first round
    raw = json.loads((out / results.FILE).read_text())
    assert len(raw["round_orders"]) == 2 and raw["environments"]["numpy:threads=1"]["threads"] == 1
    text = (out / report.REPORT).read_text()
    assert "| `threads=1` |" in text and "Best safe setting per framework" in text
    assert (out / report.FIGURE).stat().st_size > 1000
    row = next(r for r in analysis.rows(doc["items"]) if r.setting == "threads=1")
    assert math.isfinite(row.speedup) and row.low <= row.speedup <= row.high


def test_list_shows_cuda_settings_as_na_without_a_gpu(capsys, monkeypatch):
    from bench.timing import environment

    monkeypatch.setattr(environment, "has_cuda", lambda: False)
    assert bench.cli.main(["settings", "--list", "--backends", "torch"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "cudnn.benchmark" in line)
    assert "n/a: cuda only" in line


def test_setting_dataclass_reports_why_na():
    s = Setting("x", "torch", "what", devices=("cuda",), tasks=("cnn_classification",))
    assert s.applies("cnn_classification", "eager", "step", "cpu") == "cuda only"
    assert s.applies("mlp_regression", "eager", "step", "cuda") == "cnn_classification only"
    assert s.applies("cnn_classification", "compile", "step", "cuda") == "from eager only"
    assert s.applies("cnn_classification", "eager", "step", "cuda") == ""



def test_time_limit_stops_after_the_first_round_and_says_so(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = bench.cli.main(["settings", "--preset", "tiny", "--backends", "numpy",
                           "--tasks", "mlp_regression", "--phases", "step", "--budget", "0.01",
                           "--rounds", "3", "--time-limit", "0.0001", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = results.load(out)
    assert doc["rounds"] == 1 and doc["stopped"].startswith("stopped after 1 of 3 rounds")
    assert all(len(i["round_sizes"]) == 1 for i in doc["items"])
    assert "stopped after 1 of 3 rounds" in (out / report.REPORT).read_text()


def test_a_fabricated_perturbing_setting_run_by_the_worker_fails_agreement_never_best(
        tmp_path, monkeypatch):
    """Through plan -> worker -> analysis -> report: a declared setting whose program's
    gradients are 1% off is timed like any other, shown disagreeing, and never best."""
    from dataclasses import asdict

    from bench.settings import worker
    from bench.timing.matrix import PLANS, round_plan

    fake = Setting("perturb", "numpy", "gradients x1.01 (fabricated)",
                   options=(("perturb", 1.01),))
    monkeypatch.setitem(SETTINGS, "numpy", (fake,))
    backend_cls = type(impls.load("numpy"))
    original = backend_cls.build

    def build(self, *args, options=None, **kwargs):
        program = original(self, *args, **kwargs)
        return _Perturbed(program, options["perturb"]) if options else program

    monkeypatch.setattr(backend_cls, "build", build)
    configs = plans.sweep_configs("tiny", ["mlp_regression"], {})
    plan = plans.build_plan("tiny", configs, ["numpy"], ["cpu"], ["step"], threads=1)
    envs, orders = plans.round_orders(plan, 0, 0)
    assert envs == ["numpy:default"] and len(orders["numpy:default"]) == 2
    stream = tmp_path / "stream.jsonl"
    by_id = {i.id: i for i in plan.items["numpy:default"]}
    worker.run({"backend": "numpy", "preset": "tiny", "threads": 1, "env": [], "xla_flags": [],
                "round": 0, "gradcheck": True, "stream": str(stream),
                "plan": asdict(round_plan(PLANS["tiny"])),
                "items": [plans.item_spec(by_id[i], plan.settings.get(
                    f"numpy:{by_id[i].setting}")) for i in orders["numpy:default"]]})
    entries = [json.loads(line) for line in stream.read_text().splitlines()]
    items = [{**e, "cell": by_id[e["id"]].cell.id, "backend": "numpy", "task": "mlp",
              "phase": "step", "setting": by_id[e["id"]].setting,
              "round_sizes": [len(e["samples"])]} for e in entries]
    assert all(e["samples"] and not e["error"] for e in entries)
    rows = {r.setting: r for r in analysis.rows(items)}
    assert rows["default"].verdict == "agrees" and rows["perturb"].verdict == "disagrees"
    assert not rows["perturb"].safe
    assert analysis.best_per_backend(rows.values())["numpy"].setting == "default"
    assert analysis.best_in_cell(rows.values()) is None


def test_slow_settings_are_left_out_beyond_tiny_unless_named():
    configs = plans.sweep_configs("standard", None, {})
    plan = plans.build_plan("standard", configs, ["torch", "jax"], ["cpu"], ["step"],
                            threads=2, cores=2)
    na = {(n.backend, n.setting, n.cell_id.split("/")[1]): n.why for n in plan.not_applicable}
    assert na[("jax", "unroll=full", "rnn_sequence[cell=lstm]")].startswith("left out beyond")
    assert na[("torch", "compile", "rnn_sequence[cell=lstm]")].startswith("left out at standard")
    named = plans.build_plan("standard", configs, ["jax"], ["cpu"], ["step"], threads=2,
                             cores=2, names=["unroll=full"])
    assert [i.setting for i in named.items["jax:default"]].count("unroll=full") == 1


def test_the_blas_core_type_setting_needs_a_pin_and_is_run_only_by_name(monkeypatch):
    """numpy's `blas-coretype-auto` undoes an OPENBLAS_CORETYPE pin: n/a where nothing is
    pinned, left out of a default sweep (the pin guards against a crashing kernel), and
    when named it gets processes of its own that start without both variables."""
    configs = plans.sweep_configs("tiny", ["mlp_regression"], {})
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    plan = plans.build_plan("tiny", configs, ["numpy"], ["cpu"], ["step"], threads=1,
                            names=["blas-coretype-auto"])
    why = {n.setting: n.why for n in plan.not_applicable}
    assert why["blas-coretype-auto"] == "the environment sets no OPENBLAS_CORETYPE"
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    plain = plans.build_plan("tiny", configs, ["numpy"], ["cpu"], ["step"], threads=1)
    why = {n.setting: n.why for n in plain.not_applicable}
    assert why["blas-coretype-auto"].startswith("asked by name only")
    named = plans.build_plan("tiny", configs, ["numpy"], ["cpu"], ["step"], threads=1,
                             names=["blas-coretype-auto"])
    env = named.environments["numpy:blas-coretype-auto"]
    assert env.unset == ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    assert [i.setting for i in named.items["numpy:blas-coretype-auto"]] == [
        "blas-coretype-auto"]


def test_a_process_setting_that_unsets_variables_starts_its_worker_without_them(
        tmp_path, monkeypatch):
    from bench.settings import sweep

    seen = {}

    class Done:
        pid = 0

        def __init__(self, argv, env, **kw):
            seen.update(env)

        def wait(self, timeout=None):
            return 0

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    monkeypatch.setattr(sweep.subprocess, "Popen", Done)
    sweep._run_process({"unset": ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]}, tmp_path, "w", 5)
    assert "OPENBLAS_CORETYPE" not in seen and "OPENBLAS_L2_SIZE" not in seen
    sweep._run_process({"unset": []}, tmp_path, "w", 5)
    assert seen["OPENBLAS_CORETYPE"] == "Prescott"  # other processes keep the pin


def test_the_report_names_the_blas_kernel_a_numpy_process_ran(tmp_path):
    items = [_item("standard/mlp_regression/numpy/reference/cpu/float32/bs64/step", s, m,
                   backend="numpy") | {"blas": k}
             for s, m, k in (("default", 1.0, "openblas Prescott"),
                             ("blas-coretype-auto", 0.5, "openblas Haswell"))]
    text = report.render(_doc(items=[i | {"environment": f"numpy:{i['setting']}",
                                          "device": "cpu"} for i in items]))
    assert "(BLAS ran: openblas Prescott)" in text and "(BLAS ran: openblas Haswell)" in text


# --- defaults and tuned ----------------------------------------------------------------

def _cell(backend, variant, phase="step"):
    return f"standard/mlp_regression/{backend}/{variant}/cpu/float32/bs64/{phase}"


def test_tuned_uses_each_frameworks_best_safe_setting_and_ranks_both_ways():
    items = [
        # torch: the default is slower than jax; its best safe setting makes it faster
        _item(_cell("torch", "eager"), "default", 2.0),
        _item(_cell("torch", "eager"), "compile", 0.5),
        _item(_cell("torch", "eager"), "wrong", 0.1, passed=False),
        # jax: nothing beats its default beyond noise
        _item(_cell("jax", "jit"), "default", 1.0, backend="jax"),
        _item(_cell("jax", "jit"), "unroll", 0.999, backend="jax"),
        # numpy ties jax by default (0.3% apart)
        _item(_cell("numpy", "reference"), "default", 1.003, backend="numpy"),
    ]
    all_rows = analysis.rows(items)
    best = analysis.best_per_backend(all_rows)
    table = analysis.tuned(all_rows, best)
    assert list(table) == ["standard/mlp_regression/cpu/float32/bs64/step"]
    by = {t.backend: t for t in table["standard/mlp_regression/cpu/float32/bs64/step"]}
    assert by["torch"].setting == "compile"  # never the faster "wrong" one
    assert by["jax"].tuned is by["jax"].default and by["numpy"].tuned is by["numpy"].default
    default_rank = analysis.ranking((t.backend, t.default.interval) for t in by.values())
    tuned_rank = analysis.ranking((t.backend, t.tuned.interval) for t in by.values())
    assert [r.backend for r in default_rank] == ["jax", "numpy", "torch"]
    assert [r.tie for r in default_rank] == [False, True, False]
    assert [r.backend for r in tuned_rank][0] == "torch" and not tuned_rank[1].tie
    text = report.render(_doc(items=[i | {"environment": f"{i['backend']}:default",
                                          "device": "cpu"} for i in items]))
    assert "## Defaults and tuned" in text
    assert "| jax ~ numpy < torch | torch < jax ~ numpy |" in text
