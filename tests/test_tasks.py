"""Tasks: presets, knob parsing, data shapes, FLOP counts. No framework needed."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import PRESETS, TASKS, TaskError, get_task
from tasks.flops import forward_flops, step_flops, train_flops
from tasks.params import init_params
from tasks.rnn_sequence import adding_problem
from tasks.spec import Conv2D, Dense, ModelSpec, Recurrent, SpecError


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_a_consistent_model(name, preset):
    task = get_task(name)
    cfg = task.config(preset)
    spec = task.model(cfg)
    params = init_params(spec, cfg.seed)
    assert {k: v.shape for k, v in params.items()} == spec.param_shapes()
    if preset in ("tiny", "quick"):  # the large presets' data takes seconds to make
        x, y = task.data(cfg).batch(0, cfg.batch_size)
        assert x.shape == (cfg.batch_size, *spec.input_shape)
        if spec.loss == "mse":
            assert y.shape == (cfg.batch_size, *spec.output_shape)
        else:
            assert y.dtype == np.int64 and y.max() < spec.output_shape[0]


def test_init_is_seeded():
    spec = get_task("rnn_sequence").model(get_task("rnn_sequence").config("tiny"))
    a, b, c = init_params(spec, 1), init_params(spec, 1), init_params(spec, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["rnn0.w_ih"], c["rnn0.w_ih"])


def test_knob_overrides_parse_types():
    cfg = get_task("rnn_sequence").config("tiny", {"cell": "gru", "hidden": "7", "lr": "0.5"})
    assert (cfg.cell, cfg.hidden, cfg.lr) == ("gru", 7, 0.5)
    cfg = get_task("mlp_regression").config("quick", {"batch_sizes": "8,16"})
    assert cfg.batch_sizes == (8, 16)


@pytest.mark.parametrize("overrides, message", [
    ({"cell": "transformer"}, "unknown cell 'transformer'; choose from rnn, lstm, gru"),
    ({"hidden": "0"}, "hidden must be a positive integer"),
    ({"hidden": "-3"}, "hidden must be a positive integer"),
    ({"hidden": "many"}, "takes an integer"),
    ({"colour": "red"}, "unknown knob 'colour'"),
])
def test_bad_knobs_name_the_value_and_choices(overrides, message):
    with pytest.raises(TaskError, match=message.replace("(", r"\(")):
        get_task("rnn_sequence").config("quick", overrides)


def test_unknown_task_and_preset():
    with pytest.raises(TaskError, match="choose from mlp_regression, cnn_classification"):
        get_task("gan")
    with pytest.raises(TaskError, match="unknown preset 'huge'; choose from tiny, quick"):
        get_task("mlp_regression").config("huge")


def test_spec_rejects_impossible_shapes():
    with pytest.raises(SpecError, match="does not fit"):
        ModelSpec((1, 4, 4), (Conv2D("c", 2, 5),), "mse")
    with pytest.raises(SpecError, match="odd kernel"):
        Conv2D("c", 2, 4, padding="same")
    with pytest.raises(SpecError, match="unique"):
        ModelSpec((3,), (Dense("d", 2), Dense("d", 1)), "mse")


def test_adding_problem_targets_are_sums_of_marked_values():
    x, y = adding_problem(500, 20, np.random.default_rng(0))
    assert np.all(x[:, :, 1].sum(axis=1) == 2)
    assert np.allclose((x[:, :, 0] * x[:, :, 1]).sum(axis=1), y[:, 0])
    # one marker in each half
    assert np.all(x[:, :10, 1].sum(axis=1) == 1)
    # always answering 1.0 scores about the variance of a sum of two uniforms (1/6)
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.03


def test_diabetes_split_is_standardised_on_train_only():
    data = get_task("mlp_regression").data(get_task("mlp_regression").config("quick"))
    assert len(data.x_train) + len(data.x_test) == 442
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-12)
    assert not np.allclose(data.x_test.mean(axis=0), 0, atol=1e-3)


def test_flops_dense_by_hand():
    spec = ModelSpec((3,), (Dense("d", 2, "identity"),), "mse")
    # 2*N*in*out matmul + N*out bias
    assert forward_flops(spec, 5) == 2 * 5 * 3 * 2 + 5 * 2
    # backward of the first layer: weight gradient only (no input gradient)
    assert train_flops(spec, 5) > forward_flops(spec, 5) + 2 * 5 * 3 * 2 - 1
    assert step_flops(spec, 5, "adam") > step_flops(spec, 5, "sgd")


def test_flops_scale_with_batch_and_sequence():
    def rnn(t):
        return ModelSpec((t, 4), (Recurrent("r", "lstm", 8),), "mse")

    assert forward_flops(rnn(10), 4) == 2 * forward_flops(rnn(10), 2)
    assert forward_flops(rnn(20), 2) == 2 * forward_flops(rnn(10), 2)
    ratio = train_flops(rnn(10), 2) / forward_flops(rnn(10), 2)
    assert 2.0 < ratio < 4.0  # backprop costs about twice the forward pass
