"""Plain scripts written the way each framework's users write them, for `bench.timing.idiomatic`.

Each `bare_<backend>(spec, x, y)` builds the spec's architecture from the
framework's own layer library with its default initialisation (timing does
not depend on the values), puts one batch on the CPU in the layout that
library expects, and returns a call computing the loss and the gradients of
every parameter the way that framework's tutorials do:

- torch: `nn.Sequential` of nn.Linear / nn.Conv2d / nn.MaxPool2d / nn.Flatten /
  nn.RNN|LSTM|GRU, `loss.backward()` after `zero_grad(set_to_none=True)`.
- jax: a Flax linen module (nn.Dense, nn.Conv on NHWC, nn.max_pool, nn.RNN over
  nn.SimpleCell / OptimizedLSTMCell / GRUCell), `jax.jit(jax.value_and_grad(...))`.
- tensorflow: `keras.Sequential` of Keras layers on NHWC, `tf.GradientTape`
  under `tf.function` (and `jit_compile=True` for "xla").

Nothing here is nnparity's code path: that is the point of the comparison.
Frameworks are imported inside the functions; this module times and writes
nothing and must not be imported by `impls`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tasks.spec import Conv2D, Dense, Flatten, MaxPool2D, ModelSpec, Recurrent

Call = Callable[[], Any]


def _is_image(spec: ModelSpec) -> bool:
    return len(spec.input_shape) == 3


def bare_torch(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> Call:
    import torch
    from torch import nn

    acts = {"identity": nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}

    class LastState(nn.Module):
        def __init__(self, rnn: nn.Module, keep_all: bool) -> None:
            super().__init__()
            self.rnn, self.keep_all = rnn, keep_all

        def forward(self, x):
            out, _ = self.rnn(x)
            return out if self.keep_all else out[:, -1]

    mods: list[nn.Module] = []
    for layer, shape in zip(spec.layers, spec.shapes(), strict=False):
        if isinstance(layer, Dense):
            mods += [nn.Linear(shape[0], layer.units), acts[layer.activation]()]
        elif isinstance(layer, Conv2D):
            mods += [nn.Conv2d(shape[0], layer.filters, layer.kernel, layer.stride,
                               padding=layer.pad), acts[layer.activation]()]
        elif isinstance(layer, MaxPool2D):
            mods.append(nn.MaxPool2d(layer.size))
        elif isinstance(layer, Flatten):
            mods.append(nn.Flatten())
        elif isinstance(layer, Recurrent):
            cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[layer.cell]
            kw = {"nonlinearity": "relu"} if layer.activation == "relu" else {}
            mods.append(LastState(cls(shape[-1], layer.hidden, batch_first=True, **kw),
                                  layer.return_sequences))
    model = nn.Sequential(*mods)
    loss_fn = nn.MSELoss() if spec.loss == "mse" else nn.CrossEntropyLoss()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    yt = torch.from_numpy(y.astype(np.float32) if spec.loss == "mse" else y.astype(np.int64))

    def call():
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), yt)
        loss.backward()
        return loss

    return call


def _nhwc(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if _is_image(spec) else x


def bare_jax(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> Call:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    acts = {"identity": lambda z: z, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "relu": nn.relu}
    cells = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}

    class Net(nn.Module):
        @nn.compact
        def __call__(self, h):
            for layer in spec.layers:
                if isinstance(layer, Dense):
                    h = acts[layer.activation](nn.Dense(layer.units)(h))
                elif isinstance(layer, Conv2D):
                    pad = "SAME" if layer.pad else "VALID"
                    h = acts[layer.activation](nn.Conv(layer.filters, (layer.kernel,) * 2,
                                                       strides=layer.stride, padding=pad)(h))
                elif isinstance(layer, MaxPool2D):
                    h = nn.max_pool(h, (layer.size,) * 2, strides=(layer.size,) * 2)
                elif isinstance(layer, Flatten):
                    h = h.reshape((h.shape[0], -1))
                elif isinstance(layer, Recurrent):
                    kw = {"activation_fn": nn.relu} if layer.activation == "relu" else {}
                    rnn = nn.RNN(cells[layer.cell](layer.hidden, **kw), return_carry=True)
                    carry, outs = rnn(h)
                    last = carry[1] if layer.cell == "lstm" else carry  # LSTM carry is (c, h)
                    h = outs if layer.return_sequences else last
            return h

    net = Net()
    xj = jnp.asarray(_nhwc(spec, x), jnp.float32)
    params = net.init(jax.random.PRNGKey(0), xj)
    if spec.loss == "mse":
        yj = jnp.asarray(y, jnp.float32)

        def loss_fn(p):
            return jnp.mean((net.apply(p, xj) - yj) ** 2)
    else:
        yj = jnp.asarray(y, jnp.int32)

        def loss_fn(p):
            logits = net.apply(p, xj)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yj).mean()

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))

    def call():
        return jax.block_until_ready(grad_fn(params))

    return call


def bare_tensorflow(spec: ModelSpec, x: np.ndarray, y: np.ndarray, xla: bool = False) -> Call:
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    L = keras.layers
    mods: list[Any] = [keras.Input(native_shape(spec))]
    for layer in spec.layers:
        if isinstance(layer, Dense):
            mods.append(L.Dense(layer.units, activation=_keras_act(layer.activation)))
        elif isinstance(layer, Conv2D):
            mods.append(L.Conv2D(layer.filters, layer.kernel, strides=layer.stride,
                                 padding="same" if layer.pad else "valid",
                                 activation=_keras_act(layer.activation)))
        elif isinstance(layer, MaxPool2D):
            mods.append(L.MaxPooling2D(layer.size))
        elif isinstance(layer, Flatten):
            mods.append(L.Flatten())
        elif isinstance(layer, Recurrent):
            cls = {"rnn": L.SimpleRNN, "lstm": L.LSTM, "gru": L.GRU}[layer.cell]
            kw = {"activation": "relu"} if layer.activation == "relu" else {}
            mods.append(cls(layer.hidden, return_sequences=layer.return_sequences, **kw))
    model = keras.Sequential(mods)
    if spec.loss == "mse":
        loss_fn = keras.losses.MeanSquaredError()
        yt = tf.constant(y, tf.float32)
    else:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        yt = tf.constant(y, tf.int64)
    xt = tf.constant(_nhwc(spec, x), tf.float32)

    @tf.function(jit_compile=xla)
    def grads(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    def call():
        loss, g = grads(xt, yt)
        return loss.numpy()  # the host copy of a scalar: TF's own way to wait for the step

    return call


def native_shape(spec: ModelSpec) -> tuple[int, ...]:
    c, *hw = spec.input_shape
    return (*hw, c) if _is_image(spec) else tuple(spec.input_shape)


def _keras_act(name: str) -> str | None:
    return None if name == "identity" else name


BARE: dict[str, Callable[..., Call]] = {
    "torch": bare_torch,
    "jax": bare_jax,
    "tensorflow": bare_tensorflow,
}
