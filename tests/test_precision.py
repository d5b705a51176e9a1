"""Precision modes: which backend offers what, applied and restored per program, their
error against float64, cell ids that carry them, and compare/report that keep them apart.

No GPU is needed: TF32 and fp16 are GPU modes, so their selection logic is checked
here, their settings' apply-and-restore on CPU (where the flags exist but do nothing),
and the loss scaling of fp16 on CPU programs built directly (the selection never
offers them there). Every build uses the tiny preset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.agreement.precision import judge, precision_error
from bench.agreement.tolerances import expected_range
from bench.regress import compare
from bench.report.markdown import precision_table, tidy
from bench.results.read import load_run
from bench.results.schema import cell_id, dtype_segment, parse_cell_id
from bench.timing.matrix import Selection, build_groups, not_applicable, task_configs
from tasks import get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params

TASK = "mlp_regression"


def _request(task: str = TASK):
    t = get_task(task)
    cfg = t.config("tiny", {})
    spec = t.model(cfg)
    params = init_params(spec, cfg.seed)
    x, y = t.data(cfg).batch(0, cfg.batch_size)
    return spec, params, x, y, OptimizerSpec(cfg.optimizer, cfg.lr)


def _loss_grads(program, x, y):
    loss, grads = program.loss_and_grads(program.put(x), program.put(y))
    return program.to_numpy(loss), program.grads_to_canonical(grads)


def _same_bits(a, b) -> None:
    loss_a, grads_a = a
    loss_b, grads_b = b
    assert loss_a.tobytes() == loss_b.tobytes()
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert grads_a[name].tobytes() == grads_b[name].tobytes(), name


# -- which backend offers which mode where ----------------------------------------------

def test_numpy_offers_only_strict_fp32():
    import impls

    numpy = impls.load("numpy")
    spec, *_ = _request()
    assert numpy.precisions("cpu") == ("fp32",)
    assert not numpy.supports_precision(spec, "reference", "float32", "cpu", "bf16")


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_frameworks_offer_bf16_on_cpu_and_tf32_fp16_only_on_gpu(backend):
    import impls

    if not impls.is_installed(backend):
        pytest.skip(f"{backend} not installed")
    b = impls.load(backend)
    spec, params, _, _, opt = _request()
    variant = b.variants[0]
    assert b.precisions("cpu") == ("fp32", "bf16")
    assert set(b.precisions("cuda")) == {"fp32", "tf32", "bf16", "fp16"}
    assert b.supports_precision(spec, variant, "float32", "cpu", "bf16")
    for mode in ("tf32", "fp16"):
        assert not b.supports_precision(spec, variant, "float32", "cpu", mode)
        assert b.supports_precision(spec, variant, "float32", "cuda", mode)
    # reduced modes are float32 mixed modes: float64 stays the strict reference dtype
    assert not b.supports_precision(spec, variant, "float64", "cpu", "bf16")
    if backend == "torch":  # fused nn.LSTM under CPU bf16 autocast fails in oneDNN: n/a
        rnn, *_ = _request("rnn_sequence")
        assert not b.supports_precision(rnn, "native", "float32", "cpu", "bf16")
        assert b.supports_precision(rnn, "native", "float32", "cuda", "bf16")
    with pytest.raises(impls.BackendError, match="tf32"):
        b.build(spec, params, variant=variant, dtype="float32", device="cpu", optimizer=opt,
                precision="tf32")


# -- the matrix: unoffered combinations are n/a, not cells and not errors ----------------

def _described() -> dict:
    labels = [c.label for c in task_configs(TASK, "tiny", {})]
    return {
        "numpy": {"installed": True, "variants": ["reference"], "devices": ["cpu"],
                  "supports": {lb: ["reference"] for lb in labels},
                  "precision_support": {lb: {"reference": {"cpu": ["fp32"]}} for lb in labels}},
        "torch": {"installed": True, "variants": ["eager"], "devices": ["cpu", "cuda"],
                  "supports": {lb: ["eager"] for lb in labels},
                  "precision_support": {lb: {"eager": {"cpu": ["fp32", "bf16"],
                                                      "cuda": ["fp32", "tf32", "bf16", "fp16"]}}
                                        for lb in labels}},
    }


def _selection(**kw) -> Selection:
    base = dict(tasks=(TASK,), backends=("numpy", "torch"), variants=None, devices=("cpu",),
                dtypes=("float32",), phases=("step",), preset="tiny",
                precisions=("fp32", "tf32", "bf16", "fp16"))
    base.update(kw)
    return Selection(**base)


def test_matrix_leaves_unoffered_precisions_out_as_na():
    sel = _selection(dtypes=("float32", "float64"))
    cells = [c for g in build_groups(sel, _described()) for c in g.cells]
    have = {(c.backend, c.device, c.dtype, c.precision) for c in cells}
    assert have == {("numpy", "cpu", "float32", "fp32"), ("numpy", "cpu", "float64", "fp32"),
                    ("torch", "cpu", "float32", "fp32"), ("torch", "cpu", "float64", "fp32"),
                    ("torch", "cpu", "float32", "bf16")}
    na = {(b, d, t, p) for _, b, _, d, t, p in not_applicable(sel, _described())}
    assert ("numpy", "cpu", "float32", "bf16") in na
    assert ("torch", "cpu", "float32", "tf32") in na  # tf32 on CPU: n/a
    assert ("torch", "cpu", "float64", "bf16") in na
    assert not {(b, d, t, p) for b, d, t, p in have} & na


def test_gpu_modes_are_cells_where_the_gpu_is():
    cells = [c for g in build_groups(_selection(devices=("cuda",), backends=("torch",)),
                                     _described()) for c in g.cells]
    assert {c.precision for c in cells} == {"fp32", "tf32", "bf16", "fp16"}
    assert all(c.device == "cuda" for c in cells)


def test_run_with_only_unoffered_modes_is_one_line_not_a_traceback(monkeypatch, capsys):
    from bench import cli
    from bench.timing import runner

    monkeypatch.setattr(runner, "describe", lambda sel, work, threads, *timeout: _described())
    code = cli.main(["run", "--backends", "numpy", "--precisions", "bf16", "--tasks", TASK,
                     "--preset", "tiny"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n/a" in err[0]
    assert cli.main(["run", "--precisions", "fp8"]) == 2


# -- cell ids ---------------------------------------------------------------------------

def test_precision_joins_the_dtype_segment_and_parses_back():
    strict = cell_id("quick", "mlp_regression", "torch", "eager", "cpu", "float32", 64, "step")
    assert strict == "quick/mlp_regression/torch/eager/cpu/float32/bs64/step"  # unchanged
    for mode in ("tf32", "bf16", "fp16"):
        cid = cell_id("quick", "rnn_sequence[cell=gru]", "jax", "jit", "cuda", "float32", 8,
                      "backward", mode)
        assert f"/float32+{mode}/" in cid
        parsed = parse_cell_id(cid)
        assert (parsed.dtype, parsed.precision, parsed.batch_size, parsed.phase) == (
            "float32", mode, 8, "backward")
        assert not parsed.strict and mode in parsed.where
    assert parse_cell_id(strict).precision == "fp32"
    assert dtype_segment("float64") == "float64"
    for bad in ("float32+", "float32+fp32"):
        with pytest.raises(ValueError):
            parse_cell_id(f"quick/mlp_regression/torch/eager/cpu/{bad}/bs64/step")


# -- applied and restored per program ---------------------------------------------------

def test_torch_bf16_program_leaves_the_next_strict_program_bit_identical():
    pytest.importorskip("torch")
    import impls

    torch_b = impls.load("torch")
    spec, params, x, y, opt = _request("cnn_classification")

    def build(precision: str = "fp32"):
        return torch_b.build(spec, params, variant="eager", dtype="float32", device="cpu",
                             optimizer=opt, precision=precision)

    fresh = _loss_grads(build(), x, y)
    reduced = build("bf16")
    low = _loss_grads(reduced, x, y)
    reduced.step(reduced.put(x), reduced.put(y))
    assert low[0].tobytes() != fresh[0].tobytes()  # bf16 really changed the numbers
    assert all(g.dtype == np.float32 for g in low[1].values())  # float32 gradients
    assert all(p.dtype == np.float32 for p in reduced.params().values())
    _same_bits(_loss_grads(build(), x, y), fresh)


def test_torch_tf32_setting_is_restored_after_each_call():
    torch = pytest.importorskip("torch")
    from impls.torch.model import TorchModel
    from impls.torch.program import TorchProgram, tf32_enabled

    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with tf32_enabled():
        assert matmul.fp32_precision == "tf32"
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert matmul.fp32_precision == before
    # a tf32 program (built directly: the selection offers tf32 on GPU only) switches
    # the setting around its calls and leaves the strict state behind
    spec, params, x, y, opt = _request()
    matmul.fp32_precision = "ieee"
    try:
        program = TorchProgram(TorchModel(spec), params, compiled=False, dtype=torch.float32,
                               device=torch.device("cpu"), optimizer=opt, precision="tf32")
        program.sync(program.step(program.put(x), program.put(y)))
        program.forward(program.put(x))
        assert matmul.fp32_precision == "ieee"
    finally:
        matmul.fp32_precision = before


def test_jax_tf32_and_bf16_programs_leave_the_process_strict():
    jax = pytest.importorskip("jax")
    import impls
    from impls.jax.program import JaxProgram

    jax_b = impls.load("jax")
    spec, params, x, y, opt = _request()

    def build(precision: str = "fp32"):
        return jax_b.build(spec, params, variant="jit", dtype="float32", device="cpu",
                           optimizer=opt, precision=precision)

    fresh = _loss_grads(build(), x, y)
    tf32 = JaxProgram(spec, params, unroll=1, dtype="float32", device=jax.devices("cpu")[0],
                      optimizer=opt, precision="tf32")
    tf32.sync(tf32.step(tf32.put(x), tf32.put(y)))
    assert jax.config.jax_default_matmul_precision == "highest"
    low = _loss_grads(build("bf16"), x, y)
    assert low[0].tobytes() != fresh[0].tobytes()
    _same_bits(_loss_grads(build(), x, y), fresh)


def test_tensorflow_tf32_setting_is_restored_and_bf16_does_not_leak():
    tf = pytest.importorskip("tensorflow")
    import impls
    from impls.tensorflow.program import tf32_enabled

    config = tf.config.experimental
    assert not config.tensor_float_32_execution_enabled()  # the backend's strict default
    with tf32_enabled():
        assert config.tensor_float_32_execution_enabled()
    assert not config.tensor_float_32_execution_enabled()
    tf_b = impls.load("tensorflow")
    spec, params, x, y, opt = _request()

    def build(precision: str = "fp32"):
        return tf_b.build(spec, params, variant="function", dtype="float32", device="cpu",
                          optimizer=opt, precision=precision)

    fresh = _loss_grads(build(), x, y)
    low = _loss_grads(build("bf16"), x, y)
    assert low[0].tobytes() != fresh[0].tobytes()
    _same_bits(_loss_grads(build(), x, y), fresh)


# -- fp16 loss scaling (a GPU mode; its logic checked on CPU) ---------------------------

def test_torch_fp16_skips_an_overflowing_step_and_backs_the_scale_off():
    torch = pytest.importorskip("torch")
    from impls.torch.model import TorchModel
    from impls.torch.program import TorchProgram

    spec, params, x, y, opt = _request()
    program = TorchProgram(TorchModel(spec), params, compiled=False, dtype=torch.float32,
                           device=torch.device("cpu"), optimizer=opt, precision="fp16")
    xd, yd = program.put(x), program.put(y)
    start = program.params()
    program._scaler[0].fill_(3e38)  # the scaled gradients overflow float32
    program.step(xd, yd)
    assert program.loss_scale == pytest.approx(1.5e38)
    for name, value in program.params().items():
        assert np.array_equal(value, start[name]), name  # the step was skipped
    program._scaler[0].fill_(2.0**10)
    program.step(xd, yd)
    assert any(not np.array_equal(v, start[k]) for k, v in program.params().items())
    _, grads = _loss_grads(program, x, y)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


#: (scale, finite steps in a row, gradients finite) -> (scale, count) after the step:
#: an overflow, an ordinary step, growth at the 2000th step, growth past float32's range
LOSS_SCALE_CASES = [((2.0**16, 5, False), (2.0**15, 0)), ((2.0**16, 5, True), (2.0**16, 6)),
                    ((2.0**16, 1999, True), (2.0**17, 0)), ((3e38, 1999, True), (3e38, 0))]


@pytest.mark.parametrize("framework", ["numpy", "torch", "jax", "tensorflow"])
def test_every_framework_runs_the_one_loss_scale_rule(framework):
    """`impls.base.next_loss_scale` (what the jax and tensorflow fp16 steps and torch's
    public fallback run) on each framework's own 0-d tensors gives GradScaler's answers."""
    from impls.base import next_loss_scale

    mod = pytest.importorskip(framework)
    if framework == "numpy":
        where, isfinite, tensor = np.where, np.isfinite, np.asarray
    elif framework == "jax":
        where, isfinite, tensor = mod.numpy.where, mod.numpy.isfinite, mod.numpy.asarray
    elif framework == "torch":
        where, isfinite, tensor = mod.where, mod.isfinite, mod.tensor
    else:
        where, isfinite, tensor = mod.where, mod.math.is_finite, mod.constant
    for (scale, good, finite), expected in LOSS_SCALE_CASES:
        s, g = next_loss_scale(where, isfinite, tensor(np.float32(scale)),
                               tensor(np.int64(good)), tensor(finite))
        assert (float(np.asarray(s)), int(np.asarray(g))) == \
            (float(np.float32(expected[0])), expected[1]), (scale, good, finite)


def test_jax_fp16_skips_an_overflowing_step_and_backs_the_scale_off():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from impls.jax.program import JaxProgram

    spec, params, x, y, opt = _request()
    program = JaxProgram(spec, params, unroll=1, dtype="float32", device=jax.devices("cpu")[0],
                         optimizer=opt, precision="fp16")
    xd, yd = program.put(x), program.put(y)
    start = program.params()
    program._scaler = (jnp.asarray(3e38, jnp.float32), program._scaler[1])
    program.sync(program.step(xd, yd))
    assert program.loss_scale == pytest.approx(1.5e38)
    for name, value in program.params().items():
        assert np.array_equal(value, start[name]), name
    program._scaler = (jnp.asarray(2.0**10, jnp.float32), program._scaler[1])
    program.sync(program.step(xd, yd))
    assert any(not np.array_equal(v, start[k]) for k, v in program.params().items())


def test_tensorflow_fp16_skips_an_overflowing_step_and_backs_the_scale_off():
    pytest.importorskip("tensorflow")
    import impls

    spec, params, x, y, opt = _request()
    # built directly: the selection offers fp16 on GPUs only
    program = impls.load("tensorflow")._build(spec, params, variant="function",
                                              dtype="float32", device="cpu", optimizer=opt,
                                              precision="fp16")
    xd, yd = program.put(x), program.put(y)
    start = program.params()
    program._scaler[0].assign(3e38)
    program.sync(program.step(xd, yd))
    assert program.loss_scale == pytest.approx(1.5e38)
    assert int(program._scaler[1].numpy()) == 0
    for name, value in program.params().items():
        assert np.array_equal(value, start[name]), name
    program._scaler[0].assign(2.0**10)
    program._scaler[1].assign(1999)  # this finite step is the 2000th: the scale grows
    program.sync(program.step(xd, yd))
    assert program.loss_scale == 2.0**11 and int(program._scaler[1].numpy()) == 0
    assert any(not np.array_equal(v, start[k]) for k, v in program.params().items())


# -- the error columns: against the float64 reference -----------------------------------

@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_bf16_error_is_measured_against_float64_and_falls_in_its_range(backend):
    import impls

    if not impls.is_installed(backend):
        pytest.skip(f"{backend} not installed")
    variant = impls.load(backend).variants[0]
    low = precision_error(TASK, "tiny", {}, backend, variant, "float32", "cpu", "bf16",
                          steps=5)
    strict = precision_error(TASK, "tiny", {}, backend, variant, "float32", "cpu", "fp32",
                             steps=5)
    assert "error" not in low, low
    for key in ("loss_rel_err", "grad_rel_err", "trajectory_rel_err"):
        assert 0 < low[key] and strict[key] < 1e-5, key  # float32 rounding: ~1e-7
        assert low[key] > 10 * strict[key], key
    assert strict["loss_rel_err"] < 1e-6
    assert expected_range("loss", "bf16").low <= low["loss_rel_err"] \
        <= expected_range("loss", "bf16").high
    assert low["within"] is True and low["flags"] == []
    assert "expected" not in strict  # strict modes are gated, not ranged


def test_out_of_range_errors_are_flagged_not_failed():
    rng = expected_range("gradient", "bf16")
    assert rng is not None and rng.reason
    high = judge({"loss_rel_err": 1e-3, "grad_rel_err": 10 * rng.high,
                  "trajectory_rel_err": 1e-3}, "bf16")
    assert high["within"] is False and "gradient error" in high["flags"][0]
    low = judge({"loss_rel_err": 1e-3, "grad_rel_err": 1e-8, "trajectory_rel_err": 1e-3},
                "bf16")
    assert "not applied" in low["flags"][0]
    assert judge({"loss_rel_err": math.nan}, "fp32") == {}


# -- compare and report keep precisions apart -------------------------------------------

def _entry(cid: str, samples: list[float], **extra) -> dict:
    parsed = parse_cell_id(cid)
    info = {"cell": cid, "task": parsed.config, "preset": parsed.preset, "backend":
            parsed.backend, "variant": parsed.variant, "device": parsed.device,
            "dtype": parsed.dtype, "batch_size": parsed.batch_size, "phase": parsed.phase,
            "status": "ok", "precision_mode": parsed.precision, **extra}
    return {"name": cid, "fullname": cid, "stats": {"data": samples}, "extra_info": info}


def _write(path: Path, entries: list[dict], precisions=None) -> Path:
    ours = {"fingerprint": "m", "cpu": "fake", "gpu": "", "threads": 2, "frameworks": {}}
    if precisions:
        ours["precisions"] = precisions
    path.mkdir(parents=True, exist_ok=True)
    (path / "r.json").write_text(json.dumps({"machine_info": {"nnparity": ours},
                                             "benchmarks": entries}))
    return path


STRICT_ID = "tiny/mlp_regression/torch/eager/cpu/float32/bs4/step"
BF16_ID = "tiny/mlp_regression/torch/eager/cpu/float32+bf16/bs4/step"


def test_compare_never_matches_a_bf16_cell_with_an_fp32_one(tmp_path):
    base = load_run(_write(tmp_path / "a", [_entry(STRICT_ID, [1e-3] * 9)]))
    current = load_run(_write(tmp_path / "b", [_entry(BF16_ID, [5e-4] * 9)]))
    table = compare.compare_runs(base, current).table.set_index("cell")
    assert table.loc[STRICT_ID, "verdict"] == "missing"
    assert table.loc[BF16_ID, "verdict"] == "new"


def test_report_puts_speedup_beside_error_and_na_where_not_offered(tmp_path):
    err = {"loss_rel_err": 4e-4, "grad_rel_err": 6e-3, "trajectory_rel_err": 1e-3,
           "trajectory_steps": 20, **judge({"loss_rel_err": 4e-4, "grad_rel_err": 6e-3,
                                            "trajectory_rel_err": 1e-3}, "bf16")}
    entries = [_entry(STRICT_ID, [2e-3] * 9, precision_error={"grad_rel_err": 2e-7}),
               _entry(BF16_ID, [1e-3] * 9, precision_error=err),
               _entry(STRICT_ID.replace("torch/eager", "numpy/reference"), [4e-3] * 9)]
    df = tidy(load_run(_write(tmp_path / "run", entries, ["fp32", "bf16"])))
    table = precision_table(df)
    bf16 = next(line for line in table.splitlines() if "torch/eager" in line and "bf16" in line)
    assert "2.00x" in bf16 and "6.0e-03" in bf16 and "1e-04..1e-01" in bf16
    numpy_bf16 = next(line for line in table.splitlines()
                      if "numpy/reference" in line and "| bf16 |" in line)
    assert "n/a" in numpy_bf16
