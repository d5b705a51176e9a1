"""Feed-forward layers and activations of the NumPy reference, each forward beside its backward.

Every `*_forward` returns `(out, cache)`; the matching `*_backward(dout, cache,
need_dx)` returns `(dx, grads)` with `grads` keyed by the short parameter name
("weight", "bias"), and `dx` None when `need_dx` is false (the first layer
never needs it). Everything is vectorised over the batch and over pixels;
the only Python loops run over kernel offsets. Arrays keep their dtype.
Each activation backward takes the pre-activation `z` and the output `a`
(whichever it needs is cheaper than recomputing).
This module must not import any framework, nor `bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Cache = tuple[Any, ...]
Grads = dict[str, np.ndarray]
Backward = tuple[np.ndarray | None, Grads]  # (dx or None, {short name: grad})


# ----------------------------------------------------------------- Activations
def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, written via tanh so it never overflows for large |z|."""
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


def _identity(z: np.ndarray) -> np.ndarray:
    return z


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def _identity_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return da


def _sigmoid_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return da * a * (1.0 - a)


def _tanh_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return da * (1.0 - a * a)


def _relu_grad(da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    # The derivative at exactly 0 is taken as 0, as in PyTorch, JAX and TF.
    return da * (z > 0)


# name -> (forward(z) -> a, backward(da, z, a) -> dz)
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "identity": (_identity, _identity_grad),
    "sigmoid": (sigmoid, _sigmoid_grad),
    "tanh": (np.tanh, _tanh_grad),
    "relu": (_relu, _relu_grad),
}


def activate(name: str, z: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[name][0](z)


def activate_backward(name: str, da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[name][1](da, z, a)


# ----------------------------------------------------------------------- Dense
def _masked_activate(activation: str, z: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The activation, or with a given ReLU `mask` the linear piece it names: z * mask."""
    if mask is None:
        return activate(activation, z)
    if activation != "relu":
        raise ValueError(f"a mask applies to relu only, not {activation!r}")
    return z * mask.astype(z.dtype)


def _masked_backward(activation: str, da: np.ndarray, z: np.ndarray, a: np.ndarray,
                     mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return activate_backward(activation, da, z, a)
    return da * mask.astype(da.dtype)


def dense_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, activation: str,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Cache]:
    """`mask` (ReLU only): evaluate on the linear piece it names instead of `z > 0`
    (the agreement check's kink alignment; see `Program.piecewise_inputs`)."""
    z = x @ weight + bias
    a = _masked_activate(activation, z, mask)
    return a, (x, weight, z, a, activation, mask)


def dense_backward(dout: np.ndarray, cache: Cache, need_dx: bool) -> Backward:
    x, weight, z, a, activation, mask = cache
    dz = _masked_backward(activation, dout, z, a, mask)
    grads = {"weight": x.T @ dz, "bias": dz.sum(axis=0)}
    return (dz @ weight.T if need_dx else None), grads


# ---------------------------------------------------------------------- Conv2D
def _im2col(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """(N, C, H, W) padded input -> (N, Ho, Wo, C*k*k) patches, one contiguous copy."""
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    n, c, ho, wo = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n, ho, wo, c * k * k)


def conv2d_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int, activation: str,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Cache]:
    """Cross-correlation (no kernel flip), NCHW input, OIHW weight; `mask` as in `dense_forward`."""
    o, _, k, _ = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    cols = _im2col(xp, k, stride)
    z = (cols @ weight.reshape(o, -1).T + bias).transpose(0, 3, 1, 2)
    a = _masked_activate(activation, z, mask)
    return a, (x.shape, xp.shape, cols, weight, stride, pad, z, a, activation, mask)


def conv2d_backward(dout: np.ndarray, cache: Cache, need_dx: bool) -> Backward:
    x_shape, xp_shape, cols, weight, stride, pad, z, a, activation, mask = cache
    o, c, k, _ = weight.shape
    dz = _masked_backward(activation, dout, z, a, mask).transpose(0, 2, 3, 1)  # (N, Ho, Wo, O)
    n, ho, wo, _ = dz.shape
    dz_mat = dz.reshape(-1, o)
    grads = {
        "weight": (dz_mat.T @ cols.reshape(-1, c * k * k)).reshape(weight.shape),
        "bias": dz_mat.sum(axis=0),
    }
    if not need_dx:
        return None, grads
    dcols = (dz_mat @ weight.reshape(o, -1)).reshape(n, ho, wo, c, k, k)
    dcols = dcols.transpose(0, 3, 4, 5, 1, 2)  # (N, C, k, k, Ho, Wo)
    dxp = np.zeros(xp_shape, dtype=dout.dtype)
    # col2im: one strided add per kernel offset, each covering every pixel at once.
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += dcols[
                :, :, i, j
            ]
    h, w = x_shape[2], x_shape[3]
    return dxp[:, :, pad : pad + h, pad : pad + w], grads


# ------------------------------------------------------------------- MaxPool2D
def _windows(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, Ho, Wo, size*size), each window in row-major order."""
    n, c, h, w = x.shape
    ho, wo = h // size, w // size
    win = x[:, :, : ho * size, : wo * size].reshape(n, c, ho, size, wo, size)
    return win.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, size * size)


def maxpool2d_argmax(x: np.ndarray, size: int) -> np.ndarray:
    """Index of each window's first maximum in row-major window order (as in
    PyTorch), so ties such as all-zero windows after a ReLU are deterministic:
    the max-pool's mask, (N, C, Ho, Wo)."""
    return _windows(x, size).argmax(axis=-1)


def maxpool2d_forward(
    x: np.ndarray, size: int, arg: np.ndarray | None = None
) -> tuple[np.ndarray, Cache]:
    """Window = stride = size; rows/columns that do not fill a window are dropped.
    `arg` (as `maxpool2d_argmax` returns) picks the window entries instead of the
    maxima (the agreement check's kink alignment)."""
    win = _windows(x, size)
    arg = win.argmax(axis=-1) if arg is None else arg
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return out, (x.shape, arg, size)


def maxpool2d_backward(dout: np.ndarray, cache: Cache, need_dx: bool) -> Backward:
    x_shape, arg, size = cache
    if not need_dx:
        return None, {}
    n, c, ho, wo = dout.shape
    dwin = np.zeros((n, c, ho, wo, size * size), dtype=dout.dtype)
    np.put_along_axis(dwin, arg[..., None], dout[..., None], axis=-1)
    dwin = dwin.reshape(n, c, ho, wo, size, size).transpose(0, 1, 2, 4, 3, 5)
    dx = np.zeros(x_shape, dtype=dout.dtype)
    dx[:, :, : ho * size, : wo * size] = dwin.reshape(n, c, ho * size, wo * size)
    return dx, {}


# --------------------------------------------------------------------- Flatten
def flatten_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """C-order reshape of (N, C, H, W) is exactly the canonical C, H, W order."""
    return x.reshape(x.shape[0], -1), (x.shape,)


def flatten_backward(dout: np.ndarray, cache: Cache, need_dx: bool) -> Backward:
    return (dout.reshape(cache[0]) if need_dx else None), {}
