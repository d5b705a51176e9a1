"""Framework-free model specifications: layers as frozen dataclasses.

A `ModelSpec` says *what* a network computes; every backend in `impls/` builds
the same function from it. This module must not import any framework, nor
anything from `impls` or `bench`. Shapes exclude the batch dimension.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")
CELLS = ("rnn", "lstm", "gru")
PADDINGS = ("valid", "same")
LOSSES = ("mse", "softmax_cross_entropy")
# Number of gate blocks along the G*H axis of recurrent weights (docs/design.md §2).
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
# The vanilla cell's activation: tanh (the default), or ReLU (Le et al. 2015's IRNN).
RNN_ACTIVATIONS = ("tanh", "relu")


class SpecError(ValueError):
    """A model specification that cannot be built (bad size, bad choice)."""


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def _check_positive(what: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"{what} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Dense:
    """y = act(x @ weight + bias) on a (N, in) input."""

    name: str
    units: int
    activation: str = "identity"

    def __post_init__(self) -> None:
        _check_positive(f"{self.name}.units", self.units)
        _check_choice("activation", self.activation, ACTIVATIONS)


@dataclass(frozen=True)
class Conv2D:
    """Cross-correlation on NCHW input, OIHW weight, then activation."""

    name: str
    filters: int
    kernel: int
    stride: int = 1
    padding: str = "valid"
    activation: str = "identity"

    def __post_init__(self) -> None:
        _check_positive(f"{self.name}.filters", self.filters)
        _check_positive(f"{self.name}.kernel", self.kernel)
        _check_positive(f"{self.name}.stride", self.stride)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        if self.padding == "same" and (self.kernel % 2 == 0 or self.stride != 1):
            raise SpecError(f"{self.name}: 'same' padding needs an odd kernel and stride 1")

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding == "same" else 0


@dataclass(frozen=True)
class MaxPool2D:
    """Non-overlapping max pooling (window = stride = size); remainders dropped."""

    name: str
    size: int = 2

    def __post_init__(self) -> None:
        _check_positive(f"{self.name}.size", self.size)


@dataclass(frozen=True)
class Flatten:
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order in every backend."""

    name: str


@dataclass(frozen=True)
class Recurrent:
    """A recurrent layer over batch-first (N, T, F) input, zero initial state.

    Returns the last hidden state (N, H), or every state (N, T, H) when
    `return_sequences` is set. `activation` is the vanilla cell's
    h_t = act(x_t W_ih + h_{t-1} W_hh + b): "tanh" or "relu" (cell "rnn" only;
    LSTM and GRU keep their fixed sigmoid/tanh gates).
    """

    name: str
    cell: str
    hidden: int
    return_sequences: bool = False
    activation: str = "tanh"

    def __post_init__(self) -> None:
        _check_choice("cell", self.cell, CELLS)
        _check_positive(f"{self.name}.hidden", self.hidden)
        _check_choice("recurrent activation", self.activation, RNN_ACTIVATIONS)
        if self.activation != "tanh" and self.cell != "rnn":
            raise SpecError(f"{self.name}: activation {self.activation!r} is for cell 'rnn' "
                            f"only; {self.cell} has fixed gate activations")

    @property
    def gates(self) -> int:
        return GATES[self.cell]


Layer = Dense | Conv2D | MaxPool2D | Flatten | Recurrent

LAYER_TYPES: dict[type, str] = {
    Dense: "dense",
    Conv2D: "conv2d",
    MaxPool2D: "maxpool2d",
    Flatten: "flatten",
    Recurrent: "recurrent",
}


def layer_type(layer: Layer) -> str:
    return LAYER_TYPES[type(layer)]


def layer_to_dict(layer: Layer) -> dict:
    """The export form of a layer: `type`, `name` and its fields."""
    return {"type": layer_type(layer), **asdict(layer)}


def layer_from_dict(d: dict) -> Layer:
    by_name = {v: k for k, v in LAYER_TYPES.items()}
    cls = by_name[d["type"]]
    return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def output_shape(layer: Layer, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape (without batch) that `layer` produces from `in_shape`; validates rank."""
    name = layer.name
    if isinstance(layer, Dense):
        if len(in_shape) != 1:
            raise SpecError(f"{name}: Dense needs a flat (features,) input, got {in_shape}")
        return (layer.units,)
    if isinstance(layer, Conv2D):
        if len(in_shape) != 3:
            raise SpecError(f"{name}: Conv2D needs a (C, H, W) input, got {in_shape}")
        _, h, w = in_shape
        ho = conv_out(h, layer.kernel, layer.stride, layer.pad)
        wo = conv_out(w, layer.kernel, layer.stride, layer.pad)
        if ho <= 0 or wo <= 0:
            raise SpecError(f"{name}: kernel {layer.kernel} does not fit a {h}x{w} input")
        return (layer.filters, ho, wo)
    if isinstance(layer, MaxPool2D):
        if len(in_shape) != 3:
            raise SpecError(f"{name}: MaxPool2D needs a (C, H, W) input, got {in_shape}")
        c, h, w = in_shape
        if h < layer.size or w < layer.size:
            raise SpecError(f"{name}: pool size {layer.size} does not fit a {h}x{w} input")
        return (c, h // layer.size, w // layer.size)
    if isinstance(layer, Flatten):
        return (math.prod(in_shape),)
    if isinstance(layer, Recurrent):
        if len(in_shape) != 2:
            raise SpecError(f"{name}: Recurrent needs a (T, F) input, got {in_shape}")
        t, _ = in_shape
        return (t, layer.hidden) if layer.return_sequences else (layer.hidden,)
    raise SpecError(f"unknown layer {layer!r}")


def param_shapes(layer: Layer, in_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Canonical parameter names and shapes of one layer (docs/design.md §2)."""
    n = layer.name
    if isinstance(layer, Dense):
        return {f"{n}.weight": (in_shape[0], layer.units), f"{n}.bias": (layer.units,)}
    if isinstance(layer, Conv2D):
        k = layer.kernel
        return {f"{n}.weight": (layer.filters, in_shape[0], k, k), f"{n}.bias": (layer.filters,)}
    if isinstance(layer, Recurrent):
        gh = layer.gates * layer.hidden
        return {
            f"{n}.w_ih": (in_shape[1], gh),
            f"{n}.w_hh": (layer.hidden, gh),
            f"{n}.b_ih": (gh,),
            f"{n}.b_hh": (gh,),
        }
    return {}


@dataclass(frozen=True)
class ModelSpec:
    """A feed-forward stack of layers with a loss; shapes exclude the batch."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    loss: str

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, LOSSES)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise SpecError(f"layer names must be unique, got {names}")
        for d in self.input_shape:
            _check_positive("input size", d)
        self.shapes()  # validates every layer against its input

    def shapes(self) -> list[tuple[int, ...]]:
        """Input shape followed by each layer's output shape."""
        out = [tuple(self.input_shape)]
        for layer in self.layers:
            out.append(output_shape(layer, out[-1]))
        return out

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes()[-1]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter in canonical order: layer order, then name order above."""
        result: dict[str, tuple[int, ...]] = {}
        for layer, shape in zip(self.layers, self.shapes(), strict=False):
            result.update(param_shapes(layer, shape))
        return result

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "loss": self.loss,
            "layers": [layer_to_dict(layer) for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(
            input_shape=tuple(d["input_shape"]),
            layers=tuple(layer_from_dict(x) for x in d["layers"]),
            loss=d["loss"],
        )
