"""The agreement tolerances: a fixed table of floors, and the model that scales them.

Every comparison against the float64 NumPy reference reads its tolerance from
here; an entry looser than the design's starting point carries its reason
beside it. Framework-free.

How a gradient tolerance scales with the problem (`gradient_tolerance`)
-----------------------------------------------------------------------
Rounding-error analysis bounds the forward error of a fixed computation by
a problem-dependent factor times the unit roundoff u: |g_hat - g| <= c * u,
where c grows with the sizes (a length-n dot product has c ~ n in the worst
case, ~sqrt(n) typically), the magnitudes and the cancellation of the
particular inputs. A fixed tolerance calibrated on the tiny preset is a
guess of c at one size; it is wrong at width 1024 or at 64x64 images.

So c is measured, not guessed: the float32 NumPy reference runs the same
model on the same parameters and batch, and its normwise error against the
float64 reference, e_ref = c_ref * u32, is this problem's c in float32
(`RoundingError`, one per tensor). To measure rounding only, that float64
reference is evaluated on the float32 reference's own ReLU / max-pool masks:
a kink flip (a pre-activation whose sign differs in float32) is a different
thing, counted and explained by the agreement check, never absorbed here.

Another implementation performs the same operations in another order
(blocked GEMMs, FMA, pairwise or tree sums, other convolution algorithms),
which changes the constant, not how it grows with the problem; its error is
allowed to be `ROUNDING_FACTOR` (10) times the reference's. Measured spread on
the large CNN (float32, CPU, conv0.weight, issue 9): every backend's
error was 1.0x-1.6x the reference's, so 10 leaves room for GPU libraries
while a real bug (an O(1) error) stays five orders of magnitude above it.
In float64 the same c applies with u64 = u32 * 2**-29.

The tolerance never goes below the fixed entry of `TOLERANCES` (the floor):
on small problems the reference can be exact by luck (e_ref ~ 0), and the
floor is what tiny-preset checks were calibrated on. The elementwise
`atol_scale` scales the same way from the reference's worst entry
(max |g32 - g64| / max |g64|); `rtol` stays fixed.

How the finite-difference tolerance scales (`finite_difference_tolerance`)
--------------------------------------------------------------------------
Central differences (L(p + eps) - L(p - eps)) / (2 eps) in float64 carry a
truncation error O(eps^2 L''') and a cancellation error: each loss value is
off by about u|L| (u = 2**-53), so each difference by about u|L| / eps,
whatever the gradient entry is. Relative to a small gradient that is large:
the sigmoid MLP of the large preset has a first-layer gradient of norm 0.08
(vanishing through four sigmoid layers) against a loss of 1.44, and its check
at eps = 1e-6 erred by 2.9e-6, by 3.6e-7 at eps = 1e-5 and by 3.0e-8 at 1e-4:
an error proportional to 1/eps, cancellation, not a wrong gradient.
`finite_diff.cancellation` estimates it per tensor as sqrt(m) u|L| / eps over
the norm of the m differences. Over the MLPs (three activations), the CNN and
the LSTM at the tiny and large presets, the observed error was 0.6x to 3.8x
that estimate; the tolerance is `FD_FACTOR` (10) times it, never below the
fixed 1e-6. A wrong gradient (an O(1) error) stays far above it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    normwise: float  # ||g - g_ref|| / ||g_ref||
    rtol: float  # elementwise allclose: |g - g_ref| <= atol + rtol * |g_ref| ...
    atol_scale: float  # ... with atol = atol_scale * max|g_ref| (entries near zero)


# (check, dtype, device) -> Tolerance; device "*" matches any device.
TOLERANCES: dict[tuple[str, str, str], Tolerance] = {
    # One loss + gradient evaluation from identical parameters and inputs.
    ("gradient", "float64", "*"): Tolerance(normwise=1e-10, rtol=1e-7, atol_scale=1e-10),
    # float32 rounding (~6e-8 per op) accumulated over a few hundred ops per output.
    # These two gradient entries are floors: `gradient_tolerance` scales them up with
    # the problem (see the module docstring).
    ("gradient", "float32", "*"): Tolerance(normwise=1e-4, rtol=1e-2, atol_scale=1e-4),
    # 20 optimiser steps: float64 differences stay at rounding level.
    ("trajectory", "float64", "*"): Tolerance(normwise=1e-8, rtol=1e-6, atol_scale=1e-8),
    # 20 float32 steps compound rounding; Adam divides by sqrt(v) + eps, which
    # magnifies differences in near-zero gradients, so allow 1e-3 normwise.
    ("trajectory", "float32", "*"): Tolerance(normwise=1e-3, rtol=5e-2, atol_scale=1e-3),
    # The NumPy reference against central finite differences (float64, eps=1e-6):
    # truncation error O(eps^2) plus cancellation O(1e-16 / eps); a floor, scaled
    # up by `finite_difference_tolerance` (see the module docstring).
    ("finite_difference", "float64", "*"): Tolerance(normwise=1e-6, rtol=1e-3, atol_scale=1e-6),
}

#: A backend's rounding error may be this many times the float32 NumPy reference's
#: own on the same problem (derivation in the module docstring).
ROUNDING_FACTOR = 10.0
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}


@dataclass(frozen=True)
class RoundingError:
    """The float32 NumPy reference's own error against float64 on one tensor,
    the float64 side evaluated on the float32 side's masks (rounding only)."""

    normwise: float  # ||g32 - g64|| / ||g64||
    elementwise: float  # max|g32 - g64| / max|g64|


def gradient_tolerance(dtype: str, device: str = "cpu",
                       measured: RoundingError | None = None) -> Tolerance:
    """The gradient tolerance for one tensor: `ROUNDING_FACTOR` times the measured
    reference error (scaled from float32 to `dtype`'s unit roundoff), never below
    the fixed floor. Without a measurement, the floor."""
    floor = tolerance("gradient", dtype, device)
    if measured is None:
        return floor
    scale = ROUNDING_FACTOR * UNIT_ROUNDOFF[dtype] / UNIT_ROUNDOFF["float32"]
    return Tolerance(normwise=max(floor.normwise, scale * measured.normwise), rtol=floor.rtol,
                     atol_scale=max(floor.atol_scale, scale * measured.elementwise))


FD_FACTOR = 10.0


def finite_difference_tolerance(cancellation: float | None = None) -> Tolerance:
    """The reference-vs-finite-differences tolerance for one tensor: `FD_FACTOR`
    times its estimated cancellation error, never below the fixed floor."""
    floor = tolerance("finite_difference", "float64")
    if cancellation is None:
        return floor
    return Tolerance(normwise=max(floor.normwise, FD_FACTOR * float(cancellation)),
                     rtol=floor.rtol, atol_scale=floor.atol_scale)


def tolerance(check: str, dtype: str, device: str = "cpu") -> Tolerance:
    """The tolerance for a check in `dtype` on `device` (exact device first)."""
    for key in ((check, dtype, device), (check, dtype, "*")):
        if key in TOLERANCES:
            return TOLERANCES[key]
    raise KeyError(f"no tolerance for {check} in {dtype} on {device}")


# -- reduced precision modes: measured and reported, never gated ---------------------------
@dataclass(frozen=True)
class ExpectedRange:
    """Where a reduced precision mode's normwise error against float64 should fall.
    Outside it the cell is flagged, not failed: above `high` the mode costs more
    accuracy than its rounding explains; below `low` it looks as if the mode was
    not applied at all (strict float32 errors are ~1e-7)."""

    low: float
    high: float
    reason: str


# (quantity, precision mode) -> ExpectedRange. Quantities: "loss" and "gradient" (the worst
# gradient tensor) on one batch, "trajectory" (the loss sequence of TRAJECTORY_STEPS
# optimiser steps). Unit roundoff u: bf16 2^-8 = 3.9e-3, fp16 and tf32 2^-11 = 4.9e-4.
EXPECTED: dict[tuple[str, str], ExpectedRange] = {
    ("loss", "bf16"): ExpectedRange(
        1e-6, 2e-2, "one bf16 rounding of the output (u = 3.9e-3) averaged over a batch "
        "partly cancels; a loss off by more than ~5u is lost accuracy, not rounding"),
    ("gradient", "bf16"): ExpectedRange(
        1e-4, 1e-1, "bf16 matmuls round inputs to 8 bits (u = 3.9e-3) and recurrences "
        "compound it over time steps: a few times 1e-2 is the usual bf16 gradient error"),
    ("trajectory", "bf16"): ExpectedRange(
        1e-5, 1e-1, "the loss after N steps carries N steps of bf16 gradient error, "
        "damped by the learning rate"),
    ("loss", "fp16"): ExpectedRange(
        1e-7, 5e-3, "fp16 rounds to 11 bits (u = 4.9e-4), 8x finer than bf16"),
    ("gradient", "fp16"): ExpectedRange(
        1e-5, 2e-2, "fp16 gradients of a loss scaled back from 2^16: u = 4.9e-4 per op, "
        "compounded over layers and time steps"),
    ("trajectory", "fp16"): ExpectedRange(
        1e-6, 2e-2, "N steps of fp16 gradient error; skipped overflow steps add more"),
    ("loss", "tf32"): ExpectedRange(
        1e-7, 5e-3, "TF32 rounds matmul inputs to 11 bits (u = 4.9e-4), accumulates in fp32"),
    ("gradient", "tf32"): ExpectedRange(
        1e-6, 2e-2, "TF32 matmul inputs (u = 4.9e-4) in forward and backward"),
    ("trajectory", "tf32"): ExpectedRange(
        1e-6, 2e-2, "N steps of TF32 gradient error"),
}


def expected_range(quantity: str, precision: str) -> ExpectedRange | None:
    """The stated range of a reduced mode's error; None for strict modes (gated instead)."""
    return EXPECTED.get((quantity, precision))
