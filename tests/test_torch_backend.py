"""The torch backend against the float64 NumPy reference, and against torch's own oracle.

For every task (and recurrent cell) x variant x dtype on cpu: loss, forward
output and every canonical gradient agree with the reference; 20 optimiser
steps (SGD with momentum, Adam) follow the reference trajectory. Tolerances
come from `bench.agreement.tolerances`. `torch.compile` costs tens of seconds per
graph on a small CPU, so the "compile" variant is checked on one recurrent
model (the Python time loop is what compilation has to get right), one
program per dtype, which must not recompile in steady state. Also: `torch.autograd.gradcheck`
once per model, dtype hygiene, and cuda either works or fails with a
BackendError. Skips cleanly when torch is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import (  # noqa: E402
    DTYPES,
    PRESET,
    case_params,
    check_cuda_absent_is_a_backend_error,
    cuda_failures,
    failures,
    setup_case,
    variant_matrix,
)

import impls  # noqa: E402  (after the skip: impls.load imports torch)
from bench.agreement.check import TRAJECTORY_STEPS, gradient_rows, normwise, trajectory_rows  # noqa: E402
from bench.agreement.tolerances import tolerance  # noqa: E402
from impls.base import BackendError  # noqa: E402
from impls.torch.model import TorchModel  # noqa: E402
from tasks import get_task  # noqa: E402
from tasks.optim import OptimizerSpec  # noqa: E402

BACKEND = impls.load("torch")
# the one model the compile variant is held to (see the module docstring)
COMPILE_CASE = ("rnn_sequence", {"cell": "rnn"})
# compile is held to COMPILE_CASE only (see the module docstring)
UNCOMPILED = variant_matrix(BACKEND, ("eager", "native"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("task_name", "overrides", "variant"), UNCOMPILED)
def test_gradients_agree_with_reference(task_name, overrides, variant, dtype):
    rows = gradient_rows(task_name, PRESET, overrides, "torch", variant, dtype, "cpu")
    assert len(rows) >= 4  # loss, output and at least two parameters were compared
    assert not failures(rows)


@pytest.mark.parametrize("optimizer", ("sgd", "adam"))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("task_name", "overrides", "variant"), UNCOMPILED)
def test_trajectory_agrees_with_reference(task_name, overrides, variant, dtype, optimizer):
    rows = trajectory_rows(task_name, PRESET, overrides, "torch", variant, dtype, "cpu", optimizer)
    assert not failures(rows)


def _agree(check: str, dtype: str, got, ref) -> bool:
    tol = tolerance(check, dtype, "cpu")
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    atol = tol.atol_scale * float(np.max(np.abs(ref)))
    return normwise(got, ref) <= tol.normwise and np.allclose(got, ref, tol.rtol, atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_compile_agrees_and_compiles_once(dtype):
    """One compiled program per dtype (compiling is the slow part): gradients and
    output first (they change no state), then 20 Adam steps; every call after
    the first step must hit the compile cache."""
    cfg, spec, params, x, y = setup_case(*COMPILE_CASE)
    opt = OptimizerSpec("adam", cfg.lr)
    ref = impls.load("numpy").build(spec, params, variant="reference", dtype="float64",
                                    device="cpu", optimizer=opt)
    program = BACKEND.build(spec, params, variant="compile", dtype=dtype, device="cpu",
                            optimizer=opt)
    xd, yd = program.put(x), program.put(y)
    loss, grads = program.loss_and_grads(xd, yd)
    ref_loss, ref_grads = ref.loss_and_grads(x, y)
    assert _agree("gradient", dtype, program.to_numpy(loss), ref_loss)
    assert _agree("gradient", dtype, program.to_numpy(program.forward(xd)), ref.forward(x))
    canonical = program.grads_to_canonical(grads)
    assert [n for n in ref_grads if not _agree("gradient", dtype, canonical[n], ref_grads[n])] == []

    data = get_task(COMPILE_CASE[0]).data(cfg)
    losses, ref_losses = [], []
    for i in range(TRAJECTORY_STEPS):
        bx, by = data.batch(i, cfg.batch_size)
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            losses.append(program.to_numpy(program.step(program.put(bx), program.put(by))))
        ref_losses.append(ref.step(bx, by))
    with torch._dynamo.config.patch(error_on_recompile=True):
        program.forward(xd)
    assert _agree("trajectory", dtype, np.array(losses), np.array(ref_losses, np.float64))
    final, ref_final = program.params(), ref.params()
    assert [n for n in ref_final if not _agree("trajectory", dtype, final[n], ref_final[n])] == []


@pytest.mark.parametrize("native", (False, True), ids=("primitive", "native"))
@pytest.mark.parametrize(("task_name", "overrides"), case_params())
def test_autograd_gradcheck(task_name, overrides, native):
    """torch's own oracle: autograd against its finite differences, in float64."""
    _, spec, params, x, y = setup_case(task_name, overrides)
    if native and not BACKEND.supports(spec, "native"):
        pytest.skip("native variant needs a recurrent layer")
    model = TorchModel(spec, native_rnn=native)
    tensors = model.to_native(params, torch.float64, torch.device("cpu"))
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)

    def loss(*ps):
        return model.loss(list(ps), xt, yt)

    assert torch.autograd.gradcheck(loss, tuple(tensors), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("variant", ("eager", "native"))
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_is_honoured_without_global_default(dtype, variant):
    default = torch.get_default_dtype()
    cfg, spec, params, x, y = setup_case("rnn_sequence", {"cell": "lstm"})
    program = BACKEND.build(spec, params, variant=variant, dtype=dtype, device="cpu",
                            optimizer=OptimizerSpec("sgd", cfg.lr))
    xd, yd = program.put(x), program.put(y)
    want = {"float32": torch.float32, "float64": torch.float64}[dtype]
    assert xd.dtype == want and yd.dtype == want
    loss, grads = program.loss_and_grads(xd, yd)
    assert loss.dtype == want and all(g.dtype == want for g in grads)
    assert program.step(xd, yd).dtype == want
    assert program.forward(xd).shape == (cfg.batch_size, *spec.output_shape)
    assert program.precision == ("fp64" if dtype == "float64" else "fp32")
    assert program.peak_memory() is None  # no allocator statistics on cpu
    assert torch.get_default_dtype() == default


def test_labels_stay_integer():
    cfg, spec, params, x, y = setup_case("cnn_classification", {})
    program = BACKEND.build(spec, params, variant="eager", dtype="float32", device="cpu",
                            optimizer=OptimizerSpec("sgd", cfg.lr))
    assert program.put(y).dtype == torch.int64


def test_params_round_trip_canonical_layout():
    cfg, spec, params, _, _ = setup_case("rnn_sequence", {"cell": "gru"})
    for variant in ("eager", "native"):
        program = BACKEND.build(spec, params, variant=variant, dtype="float64", device="cpu",
                                optimizer=OptimizerSpec("sgd", cfg.lr))
        back = program.params()
        assert list(back) == list(params)
        for name, value in params.items():
            np.testing.assert_array_equal(back[name], value)


# -- torch's private kernels and their public fallbacks ------------------------------------

def _steps(program, x, y, n=5):
    xd, yd = program.put(x), program.put(y)
    losses = [program.to_numpy(program.step(xd, yd)) for _ in range(n)]
    return losses, program.params()


def _same_run(a, b) -> None:
    (losses_a, params_a), (losses_b, params_b) = a, b
    np.testing.assert_array_equal(np.array(losses_a), np.array(losses_b))
    assert list(params_a) == list(params_b)
    for name, value in params_a.items():
        np.testing.assert_array_equal(value, params_b[name], err_msg=name)


@pytest.mark.parametrize("optimizer", ("sgd", "adam"))
def test_updates_without_foreach_kernels_give_the_same_numbers(monkeypatch, optimizer):
    """A torch without `torch._foreach_*` gets `LoopOps`: the same parameters, bit for bit."""
    from impls.torch import optim

    cfg, spec, params, x, y = setup_case("cnn_classification", {})

    def run():
        program = BACKEND.build(spec, params, variant="eager", dtype="float32", device="cpu",
                                optimizer=OptimizerSpec(optimizer, cfg.lr))
        return _steps(program, x, y)

    assert optim.foreach_ops() is not optim.LoopOps  # torch 2.x has them all
    fused = run()
    monkeypatch.delattr(torch, "_foreach_addcmul_")
    assert optim.foreach_ops() is optim.LoopOps
    _same_run(run(), fused)
    assert not np.array_equal(fused[1]["conv1.weight"], params["conv1.weight"])  # it moved


def test_loss_scaling_without_amp_kernels_gives_the_same_numbers(monkeypatch):
    """fp16 on a torch without `torch._amp_*` uses `LoopScaling`: the same unscaled
    gradients, overflow flag, scale and tracker as the private kernels, and the same run."""
    from impls.torch.program import LoopScaling, TorchProgram, loss_scaling

    fused = loss_scaling()
    assert fused is not LoopScaling
    grads = [torch.tensor([1.5, -3.0]), torch.tensor([[2.0**20]])]
    for bad in (None, float("inf"), float("nan")):
        got = []
        for ops in (fused, LoopScaling):
            gs = [g.clone() for g in grads]
            if bad is not None:
                gs[1][0, 0] = bad
            found = torch.zeros(())
            ops.unscale_(gs, found, torch.tensor(2.0**-16))
            got.append((gs, found))
        (g_a, f_a), (g_b, f_b) = got
        assert f_a.item() == f_b.item() == (bad is not None)
        for a, b in zip(g_a, g_b, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    # (scale, tracker, found_inf): overflow, an ordinary step, growth at the interval,
    # growth that would overflow float32
    for scale, tracker, found in ((2.0**16, 5, 1.0), (2.0**16, 5, 0.0), (2.0**16, 1999, 0.0),
                                  (3e38, 1999, 0.0)):
        got = []
        for ops in (fused, LoopScaling):
            s, t = torch.tensor(scale), torch.tensor(tracker, dtype=torch.int32)
            ops.update_scale_(s, t, torch.tensor(found), 2.0, 0.5, 2000)
            got.append((s.item(), t.item()))
        assert got[0] == got[1], (scale, tracker, found, got)

    cfg, spec, params, x, y = setup_case("mlp_regression", {})

    def run():
        program = TorchProgram(TorchModel(spec), params, compiled=False, dtype=torch.float32,
                               device=torch.device("cpu"), optimizer=OptimizerSpec("adam", cfg.lr),
                               precision="fp16")
        program._scaler[0].fill_(3e38)  # this step overflows: skipped, the scale halved
        skipped, _ = _steps(program, x, y, n=1)
        halved = program.loss_scale
        program._scaler[0].fill_(2.0**10)
        losses, final = _steps(program, x, y, n=4)
        return (skipped + losses, final), (halved, program.loss_scale)

    with_kernels, scales = run()
    monkeypatch.delattr(torch, "_amp_update_scale_")
    assert loss_scaling() is LoopScaling
    without, scales_b = run()
    _same_run(without, with_kernels)
    assert scales == scales_b == (float(np.float32(3e38)) / 2, 2.0**10)
    assert not np.array_equal(without[1]["dense0.weight"], params["dense0.weight"])  # it moved


def test_native_needs_a_recurrent_layer():
    cfg, spec, params, _, _ = setup_case("mlp_regression", {})
    assert not BACKEND.supports(spec, "native")
    assert BACKEND.supports(spec, "compile")
    with pytest.raises(BackendError, match="recurrent"):
        BACKEND.build(spec, params, variant="native", dtype="float32", device="cpu",
                      optimizer=OptimizerSpec())


def test_bad_choices_raise_backend_error():
    _, spec, params, _, _ = setup_case("mlp_regression", {})
    for kwargs in ({"variant": "xla"}, {"dtype": "float16"}, {"device": "tpu"}):
        args = {"variant": "eager", "dtype": "float32", "device": "cpu", **kwargs}
        with pytest.raises(BackendError):
            BACKEND.build(spec, params, optimizer=OptimizerSpec(), **args)


def test_cuda_is_listed_only_when_present():
    assert ("cuda" in BACKEND.devices()) == torch.cuda.is_available()
    check_cuda_absent_is_a_backend_error(BACKEND, "eager")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ("eager", "native"))
def test_cuda_agrees_with_reference(variant, dtype):
    assert not cuda_failures(BACKEND, variant, dtype)
