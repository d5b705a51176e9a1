"""Analytic FLOP counts, derived layer by layer from a ModelSpec.

A multiply-add counts as 2 FLOPs; elementwise work (bias, activation, gate
nonlinearities, pooling comparisons) counts 1 per element and per operation.
The backward pass is counted from what backpropagation computes: for a matmul
layer the weight gradient and the input gradient each cost as much as the
forward matmul, except that the first layer needs no input gradient.
Framework-free; these are model FLOPs (what the maths needs), not what any
particular kernel executes.
"""

from __future__ import annotations

import math

from tasks.spec import Conv2D, Dense, Flatten, Layer, MaxPool2D, ModelSpec, Recurrent

# elementwise operations per gate element in one recurrent step (forward):
# rnn: add biases + tanh; lstm: 4 gates' nonlinearities, c = f*c + i*g, h = o*tanh(c);
# gru: gates, r * (h W_hn + b_hn), (1 - z) * n + z * h.
_CELL_ELEMENTWISE = {"rnn": 3, "lstm": 9, "gru": 10}
_ACTIVATION_COST = {"identity": 0, "relu": 1, "tanh": 1, "sigmoid": 1}


def _matmul_and_elementwise(layer: Layer, in_shape: tuple[int, ...], batch: int):
    """(matmul FLOPs, elementwise FLOPs) of one layer's forward pass."""
    if isinstance(layer, Dense):
        out = batch * layer.units
        return 2 * batch * in_shape[0] * layer.units, out * (1 + _ACTIVATION_COST[layer.activation])
    if isinstance(layer, Conv2D):
        from tasks.spec import output_shape

        c_out, h, w = output_shape(layer, in_shape)
        out = batch * c_out * h * w
        macs = out * in_shape[0] * layer.kernel**2
        return 2 * macs, out * (1 + _ACTIVATION_COST[layer.activation])
    if isinstance(layer, MaxPool2D):
        return 0, batch * math.prod(in_shape)
    if isinstance(layer, Flatten):
        return 0, 0
    if isinstance(layer, Recurrent):
        t, f = in_shape
        gh = layer.gates * layer.hidden
        matmul = 2 * batch * t * (f + layer.hidden) * gh
        return matmul, batch * t * layer.hidden * _CELL_ELEMENTWISE[layer.cell]
    raise TypeError(f"no FLOP rule for {layer!r}")


def _loss_flops(spec: ModelSpec, batch: int) -> int:
    n = batch * math.prod(spec.output_shape)
    # mse: diff, square, sum; cross-entropy: max, sub, exp, sum, log, pick
    return 3 * n if spec.loss == "mse" else 5 * n


def forward_flops(spec: ModelSpec, batch_size: int) -> int:
    """FLOPs of one inference pass over a batch."""
    total = 0
    for layer, shape in zip(spec.layers, spec.shapes(), strict=False):
        matmul, elementwise = _matmul_and_elementwise(layer, shape, batch_size)
        total += matmul + elementwise
    return total


def train_flops(spec: ModelSpec, batch_size: int) -> int:
    """FLOPs of loss + gradients (forward and backward) over a batch."""
    total = forward_flops(spec, batch_size) + 2 * _loss_flops(spec, batch_size)
    for i, (layer, shape) in enumerate(zip(spec.layers, spec.shapes(), strict=False)):
        matmul, elementwise = _matmul_and_elementwise(layer, shape, batch_size)
        if isinstance(layer, Recurrent):
            # dW_ih, dW_hh and dh_prev always; dx only when x is not the model input
            t, f = shape
            gh = layer.gates * layer.hidden
            backward = 2 * batch_size * t * gh * (f + 2 * layer.hidden)
            if i > 0:
                backward += 2 * batch_size * t * gh * f
            total += backward + 2 * elementwise
        else:
            total += (2 if i > 0 else 1) * matmul + 2 * elementwise
    return total


# elementwise FLOPs per parameter of one update (see tasks/optim.py):
# sgd: v = m*v + g (2), p -= lr*v (2); adam: m (3), v (4), two bias corrections,
# sqrt, add eps, divide, scale, subtract (7).
_UPDATE_COST = {"sgd": 4, "adam": 14}


def step_flops(spec: ModelSpec, batch_size: int, optimizer: str) -> int:
    """FLOPs of one training step: forward, backward and the parameter update."""
    n_params = sum(math.prod(s) for s in spec.param_shapes().values())
    return train_flops(spec, batch_size) + _UPDATE_COST[optimizer] * n_params
