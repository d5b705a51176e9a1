"""Every backend module defines the names `impls.CONTRACT` lists (parsed, not imported:
no framework is needed), and the one optimiser API steps every installed backend as the
NumPy reference does."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import impls

ROOT = Path(__file__).resolve().parents[1]


def defined_names(path: Path) -> set[str]:
    """Public names a module defines at top level; a public class contributes its public
    methods and annotated fields, and the names of the bases it subclasses (`Backend`,
    `Program`)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            names |= {b.id for b in node.bases if isinstance(b, ast.Name)}
            names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            names |= {f.target.id for f in node.body
                      if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("backend", list(impls.BACKENDS))
def test_every_backend_module_defines_its_contract(backend: str) -> None:
    missing = {}
    for module in impls.CONTRACT:
        path = ROOT / "impls" / backend / f"{module}.py"
        lacking = set(impls.contract(backend, module)) - defined_names(path)
        if lacking:
            missing[f"impls/{backend}/{module}.py"] = sorted(lacking)
    assert not missing, missing


def test_the_contract_covers_every_backend_module_and_every_backend() -> None:
    files = {p.stem for p in (ROOT / "impls" / "numpy").glob("*.py")}
    assert set(impls.CONTRACT) == files
    assert set(impls.KINDS) == set(impls.BACKENDS)


def test_a_missing_name_is_found(tmp_path: Path) -> None:
    module = tmp_path / "losses.py"
    module.write_text("def mse(a, b):\n    return 0\n\nLOSSES = {}\n")
    assert set(impls.contract("jax", "losses")) - defined_names(module) == \
        {"softmax_cross_entropy"}


def test_a_model_object_field_counts_as_a_name(tmp_path: Path) -> None:
    """TensorFlow's model is a dataclass: its fields are the model API's names."""
    module = tmp_path / "model.py"
    module.write_text("class Model:\n    forward: object\n    loss: object\n"
                      "    _private: object\n\ndef loss_probed():\n    pass\n")
    names = defined_names(module)
    assert {"forward", "loss", "loss_probed"} <= names and "_private" not in names
    assert set(impls.contract("tensorflow", "model")) - names == {"piecewise_inputs"}


def _native(backend: str, arrays: dict):
    """`arrays` as the params/grads container `backend`'s optimiser takes, and back."""
    if backend == "numpy":
        return {k: v.copy() for k, v in arrays.items()}, lambda p: p
    if backend == "torch":
        import torch
        return [torch.tensor(v) for v in arrays.values()], \
            lambda p: dict(zip(arrays, (t.numpy() for t in p), strict=True))
    if backend == "jax":
        import jax.numpy as jnp
        return {k: jnp.asarray(v) for k, v in arrays.items()}, \
            lambda p: {k: np.asarray(v) for k, v in p.items()}
    import tensorflow as tf

    from impls.tensorflow.model import native
    return [native(tf.Variable(v), k) for k, v in arrays.items()], \
        lambda p: dict(zip(arrays, (q.variable.numpy() for q in p), strict=True))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("backend", list(impls.BACKENDS))
def test_one_optimiser_api_steps_every_backend_like_the_reference(backend: str,
                                                                  optimizer: str) -> None:
    """`init_state(spec, params)` and `make_update(spec)(params, grads, state) -> (params,
    state)` on each backend's native containers: three float64 steps, kept from what
    `update` returns, land where the NumPy reference's do."""
    import importlib

    if not impls.is_installed(backend):
        pytest.skip(f"{backend} not installed")
    impls.load(backend)  # the backend's runtime configuration (JAX: x64)
    from tasks.optim import OptimizerSpec

    spec = OptimizerSpec(optimizer, lr=0.1)
    rng = np.random.default_rng(0)
    start = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(3)]
    results = {}
    for name in ("numpy", backend):
        optim = importlib.import_module(f"impls.{name}.optim")
        params, back = _native(name, start)
        state, update = optim.init_state(spec, params), optim.make_update(spec)
        for g in grads:
            native_grads = _native(name, g)[0]
            if name == "tensorflow":
                native_grads = [q.variable for q in native_grads]
            params, state = update(params, native_grads, state)
        results[name] = back(params)
    for k, ref in results["numpy"].items():
        assert not np.allclose(ref, start[k])
        # float64, three steps: the backends order the same operations differently (fused
        # kernels, bias corrections rounded from float64), so rounding, ~1e-16, remains
        np.testing.assert_allclose(results[backend][k], ref, rtol=1e-12, atol=0, err_msg=k)
