"""Agreement at scale (issue 9): kink flips told from bugs, tolerances that scale.

A fake backend stands for a float32 forward that lands on the other side of a
ReLU kink: it evaluates the NumPy reference on masks where the units with the
smallest |pre-activation| are flipped, and reports those pre-activations with
their sign flipped (what `Program.piecewise_inputs` would show). The check must
count the flips, fail against the plain float64 reference, and agree after
aligning the masks; the same fake with a real gradient bug must still fail.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pytest

import impls
from bench.agreement import check
from bench.agreement.tolerances import (
    ROUNDING_FACTOR,
    RoundingError,
    finite_difference_tolerance,
    gradient_tolerance,
    tolerance,
)
from impls.base import Backend, piecewise_layers
from impls.numpy import model
from impls.numpy.program import NumpyProgram

TASK, KNOBS = "mlp_regression", {"activation": "relu"}


class FlippingProgram(NumpyProgram):
    """The reference on masks with `flips` units of layer dense0 flipped."""

    flips = 0
    bug = 1.0  # scale of dense1.weight's gradient: 1.0 is no bug

    def _inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        inputs = model.piecewise_inputs(self.spec, self._params, x)
        z = inputs["dense0"].copy()
        flat = z.reshape(-1)
        nearest = np.argsort(np.abs(flat))[: self.flips]  # the units rounding could flip
        flat[nearest] = -flat[nearest]
        inputs["dense0"] = z
        return inputs

    def piecewise_inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self._inputs(x)

    def _masks(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return model.masks_from_inputs(self.spec, self._inputs(x))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return model.forward_masked(self.spec, self._params, x, self._masks(x))

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, dict]:
        loss, grads = model.loss_and_grads(self.spec, self._params, x, y, masks=self._masks(x))
        grads["dense1.weight"] = grads["dense1.weight"] * self.bug
        return loss, grads


class NoMasksProgram(NumpyProgram):
    def piecewise_inputs(self, x: np.ndarray) -> None:
        return None


class FakeBackend(Backend):
    name = "fake"
    variants: ClassVar[tuple[str, ...]] = ("flip",)

    def __init__(self, program: type[NumpyProgram]) -> None:
        self.program = program

    def version(self) -> str:
        return "0"

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def _build(self, spec, params, *, variant, dtype, device, optimizer):
        return self.program(spec, params, dtype, optimizer)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """Install a fake backend named "fake" built from a given Program class."""

    def install(program: type[NumpyProgram]) -> None:
        real = impls.load
        monkeypatch.setattr(impls, "load",
                            lambda name: FakeBackend(program) if name == "fake" else real(name))

    return install


def _rows(dtype: str = "float64") -> list[check.Row]:
    return check.gradient_rows(TASK, "tiny", KNOBS, "fake", "flip", dtype, "cpu")


def test_kink_flips_are_counted_and_explained(fake) -> None:
    class Flip2(FlippingProgram):
        flips = 2

    fake(Flip2)
    rows = _rows()
    assert {r.kink_flips for r in rows} == {2}
    assert {r.kink_layers for r in rows} == {"dense0=2,dense1=0"}
    # against the plain reference the flipped units are a real difference ...
    assert any(r.rel_err > r.tolerance for r in rows)
    # ... which vanishes on the backend's masks: a pass with its explanation
    assert all(r.aligned_rel_err is not None and r.aligned_rel_err <= r.tolerance for r in rows)
    assert all(r.passed for r in rows)
    assert check.verdict(rows) == "agrees, 2 kink flips"
    assert check.summary(rows)["kink_flips"] == 2


def test_a_real_gradient_bug_still_fails_after_mask_alignment(fake) -> None:
    class FlipAndBug(FlippingProgram):
        flips, bug = 2, 1.01

    fake(FlipAndBug)
    rows = _rows()
    bad = [r for r in rows if not r.passed]
    assert [r.tensor for r in bad] == ["dense1.weight"]
    assert bad[0].aligned_rel_err > bad[0].tolerance
    assert check.verdict(rows) == "disagrees"


def test_without_masks_a_flip_is_a_plain_disagreement(fake) -> None:
    class Flip2NoMasks(FlippingProgram):
        flips = 2

        def piecewise_inputs(self, x):
            return None

    fake(Flip2NoMasks)
    rows = _rows()
    assert {r.kink_flips for r in rows} == {None}
    assert not all(r.passed for r in rows)


def test_a_real_float32_program_with_no_flips_reports_zero() -> None:
    rows = check.gradient_rows(TASK, "tiny", KNOBS, "numpy", "reference", "float32", "cpu")
    assert {r.kink_flips for r in rows} == {0} and all(r.passed for r in rows)
    assert check.verdict(rows) == "agrees"


def test_reference_on_its_own_masks_is_the_reference() -> None:
    cfg, spec, params, data = check._setup("cnn_classification", "tiny", ())
    x, y = data.batch(0, cfg.batch_size)
    masks = model.masks_from_inputs(spec, model.piecewise_inputs(spec, params, x))
    assert set(masks) == set(piecewise_layers(spec)) == {"conv0", "pool0", "conv1"}
    loss, grads = model.loss_and_grads(spec, params, x, y)
    loss_m, grads_m = model.loss_and_grads(spec, params, x, y, masks=masks)
    assert loss == loss_m and all(np.array_equal(grads[k], grads_m[k]) for k in grads)
    # a different max-pool choice changes the gradient: the mask is really used
    other = dict(masks, pool0=(masks["pool0"] + 1) % 4)
    assert check.kink_flips(spec, other, masks)["pool0"] == masks["pool0"].size
    _, grads_o = model.loss_and_grads(spec, params, x, y, masks=other)
    assert not np.allclose(grads_o["conv0.weight"], grads["conv0.weight"])


def test_tolerance_scales_with_the_measured_reference_error_above_a_floor() -> None:
    floor = tolerance("gradient", "float32")
    assert gradient_tolerance("float32", "cpu", None) == floor
    tiny = gradient_tolerance("float32", "cpu", RoundingError(1e-9, 1e-9))
    assert tiny.normwise == floor.normwise and tiny.atol_scale == floor.atol_scale
    big = gradient_tolerance("float32", "cpu", RoundingError(3e-4, 2e-3))
    assert big.normwise == pytest.approx(ROUNDING_FACTOR * 3e-4)
    assert big.atol_scale == pytest.approx(ROUNDING_FACTOR * 2e-3)
    # float64: the same problem constant at float64's unit roundoff
    f64 = gradient_tolerance("float64", "cpu", RoundingError(1.0, 1.0))
    assert f64.normwise == pytest.approx(ROUNDING_FACTOR * 2.0**-29)


def test_rounding_errors_are_measured_per_tensor() -> None:
    measured = check.rounding_errors(TASK, "tiny", tuple(sorted(KNOBS.items())))
    assert {"loss", "output", "dense0.weight"} <= set(measured)
    assert all(0 < e.normwise < 1e-5 for e in measured.values())  # float32, tiny problem


def _piecewise_variants() -> list:
    """(backend, variant) for every installed backend's variant that runs the CNN,
    torch's compile left out (a minute of compiling on two cores)."""
    from conftest import spec_for

    spec = spec_for("cnn_classification", {})
    out = []
    for name in ("numpy", "torch", "jax", "tensorflow"):
        if not impls.is_installed(name):
            continue
        be = impls.load(name)
        out += [pytest.param(name, v, id=f"{name}-{v}") for v in be.variants
                if be.supports(spec, v) and (name, v) != ("torch", "compile")]
    return out


@pytest.mark.parametrize("backend,variant", _piecewise_variants())
def test_every_variant_reads_the_masks_of_its_own_forward(backend, variant) -> None:
    """Each variant offers its piecewise inputs (the idiomatic layers' too: Flax
    sows them, Keras layers expose their variables), in canonical layout, and in
    float64 they give exactly the reference's masks."""
    from conftest import build_case

    _, spec, params, program, x, _ = build_case(impls.load(backend), "cnn_classification", {},
                                                variant, "float64")
    inputs = program.piecewise_inputs(program.put(x))
    assert inputs is not None, f"{backend}/{variant} offers no piecewise inputs"
    masks = model.masks_from_inputs(spec, inputs)
    ref = model.masks_from_inputs(spec, model.piecewise_inputs(spec, params, x))
    assert set(masks) == {"conv0", "pool0", "conv1"}
    assert check.kink_flips(spec, masks, ref) == {"conv0": 0, "pool0": 0, "conv1": 0}


def test_finite_difference_tolerance_allows_cancellation_but_not_a_wrong_gradient() -> None:
    """At a tiny eps the differences' own cancellation error passes the fixed 1e-6
    floor; the scaled tolerance allows for it, and a 1% gradient error still fails."""
    from bench.agreement.finite_diff import cancellation, check_model_detailed, compare

    cfg, spec, params, data = check._setup("mlp_regression", "tiny", (("activation", "sigmoid"),))
    x, y = data.batch(0, cfg.batch_size)
    found = check_model_detailed(spec, params, x, y, eps=1e-10)
    floor = tolerance("finite_difference", "float64").normwise
    assert max(err for err, _ in found.values()) > floor  # cancellation at eps=1e-10
    for name, (err, noise) in found.items():
        assert err <= finite_difference_tolerance(noise).normwise, name
    # the gradcheck rows built from it are plain JSON (--json), above the floor too
    rows = check.finite_difference_rows("mlp_regression", "large", {"activation": "sigmoid"})
    assert max(r.tolerance for r in rows) > floor and all(r.passed for r in rows)
    json.dumps([r.to_dict() for r in rows])
    # the same differences against a gradient 1% off
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    loss, grads = model.loss_and_grads(spec, p64, np.asarray(x, np.float64), y)
    numerical = {}
    for name in ("dense0.weight", "dense1.bias"):
        idx = np.arange(grads[name].size)
        numerical[name] = (idx, grads[name].reshape(-1).copy())  # exact "differences"
    wrong = {k: v * 1.01 for k, v in grads.items()}
    noise = cancellation(float(loss), numerical, eps=1e-6)
    for name, err in compare(wrong, numerical).items():
        assert err > finite_difference_tolerance(noise[name]).normwise, name
