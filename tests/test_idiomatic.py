"""The idiomatic variants (each framework's own layer library, every task) against the reference.

torch "nn" (torch.nn modules), tensorflow "keras_layers" and "keras_xla" (Keras
layers under tf.function, without and with XLA) and jax "flax" (Flax linen)
take the canonical parameters and must match the float64 NumPy reference like
every other variant: loss, output and every gradient in float32 and float64,
and 20-step Adam trajectories in float64 (SGD too for the layouts that convert:
the NHWC CNN and the LSTM's shared bias; float32 trajectories are the CI
gate's). Tiny preset; torch.compile is not
involved. Each backend is skipped cleanly when its framework is not installed.
Also checks `bench.timing.bare_scripts` builds and runs a CNN and an LSTM (tiny), since
the idiomatic benchmark depends on them.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bench.agreement.check import gradient_rows, trajectory_rows
from tasks import get_task

PRESET = "tiny"
IDIOMATIC = [("torch", "nn"), ("tensorflow", "keras_layers"), ("tensorflow", "keras_xla"),
             ("jax", "flax")]
MODELS = [
    ("mlp_regression", {}),
    ("cnn_classification", {}),
    ("rnn_sequence", {"cell": "rnn"}),
    ("rnn_sequence", {"cell": "lstm"}),
    ("rnn_sequence", {"cell": "gru"}),
]
_NEEDS = {"torch": ("torch",), "tensorflow": ("tensorflow",), "jax": ("jax", "flax")}


def _skip_unless(backend: str) -> None:
    for module in _NEEDS[backend]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def _id(task: str, knobs: dict) -> str:
    return task.split("_")[0] + (f"-{knobs['cell']}" if knobs else "")


def _failures(rows) -> list[str]:
    return [f"{r.check} {r.tensor}: {r.rel_err:.2e} > {r.tolerance:.0e} "
            f"(allclose {r.allclose})" for r in rows if not r.passed]


CASES = [pytest.param(b, v, t, k, d, id=f"{b}-{v}-{_id(t, k)}-{d}")
         for b, v in IDIOMATIC for t, k in MODELS for d in ("float32", "float64")]


@pytest.mark.parametrize(("backend", "variant", "task", "knobs", "dtype"), CASES)
def test_idiomatic_variant_matches_reference(backend, variant, task, knobs, dtype):
    _skip_unless(backend)
    import impls

    be = impls.load(backend)
    assert variant in be.variants
    spec = get_task(task).model(get_task(task).config(PRESET, knobs))
    assert be.supports(spec, variant), "an idiomatic variant serves every task"
    rows = gradient_rows(task, PRESET, knobs, backend, variant, dtype, "cpu")
    # Trajectories in float64 only, where they are strictest: the float32 trajectories of
    # every variant are the CI agreement gate's (`gradcheck --dtypes float32 --steps 20`),
    # and running them here too doubled this file's time.
    if dtype == "float64":
        rows += trajectory_rows(task, PRESET, knobs, backend, variant, dtype, "cpu", "adam")
    converts = task == "cnn_classification" or knobs.get("cell") == "lstm"
    if dtype == "float64" and converts:
        rows += trajectory_rows(task, PRESET, knobs, backend, variant, dtype, "cpu", "sgd")
    assert not _failures(rows), _failures(rows)


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_bare_scripts_run_every_model(backend):
    _skip_unless(backend)
    from bench.timing.bare_scripts import BARE

    # one feed-forward and one recurrent model keep this cheap (each compiles)
    for task_name, knobs in (MODELS[1], MODELS[3]):
        task = get_task(task_name)
        cfg = task.config(PRESET, knobs)
        x, y = task.data(cfg).batch(0, cfg.batch_size)
        loss = BARE[backend](task.model(cfg), x, np.asarray(y))()
        value = loss[0] if isinstance(loss, tuple) else loss
        value = value.item() if hasattr(value, "item") else value
        assert np.isfinite(float(value)), (task_name, knobs)


def test_abstraction_table_pairs_primitives_with_idiomatic():
    import pandas as pd

    from bench.report.markdown import abstraction_rows, abstraction_table

    rows = []
    for variant, scale in (("eager", 1.0), ("nn", 1.5), ("native", 9.0)):
        for phase in ("forward", "backward", "step"):
            rows.append(dict(config="mlp", backend="torch", dtype="float32", device="cpu",
                             phase=phase, status="ok", batch_size=64, variant=variant,
                             median=scale * 0.002))
    rows.append(dict(config="mlp", backend="torch", dtype="float32", device="cpu", phase="step",
                     status="ok", batch_size=256, variant="nn", median=1.0))  # a sweep cell
    got = abstraction_rows(pd.DataFrame(rows))
    assert list(got["phase"]) == ["forward", "backward", "step"]
    assert set(got["pair"]) == {"eager vs nn"} and set(got["batch_size"]) == {64}
    assert np.allclose(got["ratio"], 1.5)
    assert "1.50" in abstraction_table(pd.DataFrame(rows))
    assert "No run" in abstraction_table(pd.DataFrame(rows[:3]))


def test_abstraction_figure_has_a_panel_per_pair_and_a_row_per_config(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from bench.report import plots

    rows = [dict(config=config, backend=backend, dtype="float32", device="cpu", phase=phase,
                 status="ok", batch_size=64, variant=variant,
                 median=0.002 * (3.0 if variant == "flax" else 1.0))
            for config in ("mlp", "cnn")
            for backend, variant in (("torch", "eager"), ("torch", "nn"), ("jax", "jit"),
                                     ("jax", "flax"))
            for phase in ("forward", "backward", "step")]
    figures = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out, stem: figures.append(
        [(ax.get_title(), [t.get_text() for t in ax.get_yticklabels()],
          sorted(round(b.get_width(), 6) for b in ax.patches)) for ax in fig.axes])
        or real_save(fig, out, stem))
    path = plots.abstraction(pd.DataFrame(rows), tmp_path)
    assert path is not None and path.is_file()
    (panels,) = figures
    assert [title for title, _, _ in panels] == ["torch: eager vs nn", "jax: jit vs flax"]
    assert panels[0][1] == ["cnn", "mlp"]  # one row of bars per config, shared axis
    assert panels[0][2] == [1.0] * 6 and panels[1][2] == [3.0] * 6  # 2 configs x 3 phases
    assert plots.abstraction(pd.DataFrame(rows[:3]), tmp_path / "none") is None
