"""Held-out training targets (the foundation issue's table), reached through `train`.

Every backend trains in float32 from the same canonical initial parameters
and batches, with its default variant (torch's fused RNN layers for RNNs).
"""

from __future__ import annotations

import pytest

from bench.training.train import train
from tasks import get_task

ALWAYS_ONE_MSE = 1 / 6  # the adding problem's MSE when always answering 1.0


def _train(task_name, backend, overrides=None, preset="quick", variant=None, steps=None,
           stop_when=None):
    task = get_task(task_name)
    cfg = task.config(preset, overrides or {})
    return train(task, cfg, backend, variant, "float32", "cpu", steps or cfg.steps,
                 progress=False, stop_when=stop_when)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "tensorflow"])
def test_diabetes_r2(backend):
    if backend != "numpy":
        pytest.importorskip(backend)
    assert _train("mlp_regression", backend).metric >= 0.40


def test_training_stops_at_the_first_evaluation_that_meets_the_target():
    task = get_task("mlp_regression")
    cfg = task.config("quick")
    full = train(task, cfg, "numpy", None, "float64", "cpu", 400, progress=False)
    assert len(full.losses) == 400
    # a target the run meets: it stops at an evaluation step (a multiple of 100), and
    # its losses are the first steps of the full run's (same seed, same batches)
    early = train(task, cfg, "numpy", None, "float64", "cpu", 400, progress=False,
                  stop_when=lambda r2: r2 > -100.0)
    assert len(early.losses) == 100
    assert early.losses == pytest.approx(full.losses[:100], rel=0, abs=0)
    # a target no run meets: every step is taken and the final metric is reported
    never = train(task, cfg, "numpy", None, "float64", "cpu", 400, progress=False,
                  stop_when=lambda r2: r2 > 2.0)
    assert len(never.losses) == 400 and never.metric == pytest.approx(full.metric)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "tensorflow"])
def test_digits_cnn_accuracy(backend):
    if backend != "numpy":
        pytest.importorskip(backend)
    assert _train("cnn_classification", backend).metric >= 0.95


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "tensorflow"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_adding_problem_t50_gated_cells_learn(cell, backend):
    if backend != "numpy":
        pytest.importorskip(backend)
    # torch trains with its fused nn.LSTM/nn.GRU: the eager variant's Python loop
    # over 50 time steps costs ~10x more per step; the trajectory tests prove
    # both variants take the same steps.
    # The claim is "learns within the preset's 1000 steps": training stops at the
    # first held-out evaluation (every 100 steps) that meets the target, which the
    # gated cells reach near step 500, so a pass costs about half the budget.
    variant = "native" if backend == "torch" else None
    target = ALWAYS_ONE_MSE / 10
    result = _train("rnn_sequence", backend, {"cell": cell, "seq_len": "50"}, variant=variant,
                    stop_when=lambda mse: mse < target)
    assert result.metric < target, f"held-out MSE {result.metric:.4f} after {len(result.losses)}"


def test_training_loss_falls_for_vanilla_rnn():
    # The vanilla RNN is expected to stall near the always-one MSE at T=50
    # (vanishing gradients); only assert that training runs and is finite.
    # (300 steps: the fall shows within them; the learning claims are the gated cells')
    result = _train("rnn_sequence", "numpy", {"cell": "rnn"}, preset="quick", steps=300)
    assert result.losses[-50:].mean() < result.losses[:50].mean()
