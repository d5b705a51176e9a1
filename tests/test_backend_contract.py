"""Every backend module defines the names `impls.CONTRACT` lists (parsed, not imported:
no framework is needed)."""

from __future__ import annotations

import ast
from pathlib import Path

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
