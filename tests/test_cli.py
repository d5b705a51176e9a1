"""The command line: exit codes, one-line errors, export format, numpy gradcheck, train."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real entry point in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "bench.cli", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, bad", [
    (["train", "--task", "gan"], "'gan'"),
    (["train", "--task", "mlp_regression", "--preset", "huge"], "'huge'"),
    (["train", "--task", "rnn_sequence", "--backend", "mxnet"], "'mxnet'"),
    (["train", "--task", "rnn_sequence", "--cell", "transformer"], "'transformer'"),
    (["train", "--task", "rnn_sequence", "--set", "hidden=0"], "hidden must be a positive"),
    (["train", "--task", "rnn_sequence", "--steps", "0"], "--steps: must be a positive"),
    (["gradcheck", "--backends", "numpy,mxnet"], "'mxnet'"),
    (["gradcheck", "--dtype", "float16"], "'float16'"),
    (["export", "--task", "cnn_classification", "--set", "filters1=-1", "--out", "x.npz"],
     "filters1 must be a positive"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(args, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert bad in err
    assert "Traceback" not in err


def test_bad_input_through_the_real_entry_point_has_no_traceback():
    proc = run_cli("gradcheck", "--tasks", "rnn_sequence", "--cell", "transformer")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nnparity gradcheck: error: unknown cell 'transformer'; choose from rnn, lstm, gru"]


@pytest.mark.parametrize("task, cell", [
    ("mlp_regression", None), ("cnn_classification", None),
    ("rnn_sequence", "rnn"), ("rnn_sequence", "lstm"), ("rnn_sequence", "gru"),
])
def test_export_writes_the_documented_npz(tmp_path, task, cell):
    out = tmp_path / "ref.npz"
    args = ["export", "--task", task, "--preset", "tiny", "--seed", "3", "--out", str(out)]
    assert main(args + (["--cell", cell] if cell else [])) == 0
    z = np.load(out)
    meta = json.loads(str(z["meta"]))
    assert meta["task"] == task and meta["seed"] == 3 and meta["dtype"] == "float64"
    assert {"preset", "loss", "input_shape", "layers"} <= set(meta)
    params = sorted(k[6:] for k in z.files if k.startswith("param/"))
    grads = sorted(k[5:] for k in z.files if k.startswith("grad/"))
    assert params == grads and params
    for name in params:
        assert z[f"param/{name}"].shape == z[f"grad/{name}"].shape
        assert np.isfinite(z[f"grad/{name}"]).all()
    assert z["x"].shape[1:] == tuple(meta["input_shape"])
    assert np.isfinite(z["loss"]) and z["loss"].shape == ()
    types = {layer["type"] for layer in meta["layers"]}
    assert types <= {"dense", "conv2d", "maxpool2d", "flatten", "recurrent"}
    if cell:
        assert [la["cell"] for la in meta["layers"] if la["type"] == "recurrent"][0] == cell


def test_export_is_reproducible_from_its_own_meta(tmp_path):
    """Rebuild the model from `meta` alone: its loss is the exported loss, and the exported
    gradients are that loss's derivatives (central differences, not the reference's backward)."""
    from bench.agreement.finite_diff import numerical_grads
    from impls.numpy.model import loss
    from tasks.spec import ModelSpec

    out = tmp_path / "ref.npz"
    assert main(["export", "--task", "rnn_sequence", "--cell", "lstm", "--out", str(out)]) == 0
    z = np.load(out)
    meta = json.loads(str(z["meta"]))
    spec = ModelSpec.from_dict(meta)
    params = {k[6:]: z[k] for k in z.files if k.startswith("param/")}
    assert float(loss(spec, params, z["x"], z["y"])) == pytest.approx(float(z["loss"]), rel=1e-12)
    numeric = numerical_grads(lambda p: float(loss(spec, p, z["x"], z["y"])), params)
    for name, (idx, values) in numeric.items():
        exported = z[f"grad/{name}"].reshape(-1)[idx]
        assert np.linalg.norm(exported - values) <= 1e-6 * np.linalg.norm(values), name


def test_numpy_gradcheck_exits_0_and_writes_json(tmp_path, capsys):
    out = tmp_path / "g.json"
    code = main(["gradcheck", "--backends", "numpy", "--device", "cpu", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    fd = [r for r in rows if r["check"] == "finite_difference"]
    assert {r["task"] for r in fd} == {"mlp_regression", "cnn_classification", "rnn_sequence"}
    assert {r["knobs"] for r in fd if r["task"] == "rnn_sequence"} == {
        "cell=rnn", "cell=lstm", "cell=gru"}
    assert all(r["rel_err"] <= r["tolerance"] <= 1e-6 for r in fd)
    assert "configurations agree" in capsys.readouterr().out


def test_train_prints_curve_and_metric(capsys):
    code = main(["train", "--task", "mlp_regression", "--steps", "30", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "loss curve: step" in out and "held-out R^2:" in out
