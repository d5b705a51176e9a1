"""The import structure: `import tasks, impls, bench` (and the CLI) imports no framework,
and the modules import each other without cycles and only downwards (docs/design.md §1)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from impls import BACKENDS

FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "keras")


def test_package_import_pulls_in_no_framework():
    code = (
        "import sys, tasks, impls, bench, bench.cli\n"
        "bench.cli.build_parser()\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- the import graph: no cycles, no upward imports ---------------------------------------------
#
# Every `import` and `from ... import` in tasks/, impls/ and bench/ counts, wherever it stands:
# at module level, inside a function (a lazy import hides a cycle, it does not remove it) or
# under `if TYPE_CHECKING:`. Importing `a.b.c` also runs the `__init__` of `a` and `a.b`; those
# implicit edges are not counted (a package's `__init__` may re-export its own modules).

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "impls", "bench")

# The layer order of docs/design.md §1, lowest first: a module may import its own unit and
# the units of lower layers, never a higher layer's and never a peer's in the same layer.
# A unit is the longest listed prefix of a module's dotted name.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tasks",),
    ("impls",),  # the interface and shared rules: impls, impls.base/errors/threads
    ("impls.numpy", "impls.torch", "impls.jax", "impls.tensorflow"),
    ("bench", "bench.options", "bench.progress"),
    ("bench.results",),
    ("bench.agreement",),
    ("bench.timing",),
    ("bench.distributed", "bench.regress", "bench.report", "bench.settings", "bench.study",
     "bench.training"),
    # commands built on the libraries above: the A/A audit; the race, which trains through
    # bench.training and draws with bench.report's helpers
    ("bench.audit", "bench.race"),
    ("bench.commands",),  # the subcommands, one module each, over every library above
    ("bench.cli",),
    ("bench.clidoc",),  # the reference generated from the parser
)


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__) for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _resolve(name: str, modules: dict) -> str | None:
    """The project module `name` names, or the longest module prefix of it (a name inside)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def _imports(module: str, path: Path, is_package: bool, modules: dict) -> dict[str, int]:
    """Project modules `module` imports (anywhere in the file) -> the first line that does."""
    out: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target and target != module:
            out.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_resolve(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in modules else _resolve(source, modules), node.lineno)
    return out


def import_graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    return {m: _imports(m, path, pkg, modules) for m, (path, pkg) in modules.items()}


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _unit(module: str) -> tuple[str, int]:
    """(the unit, its layer) of a module: the longest prefix named in LAYERS."""
    best = ("", -1)
    for layer, units in enumerate(LAYERS):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and len(unit) > len(best[0]):
                best = (unit, layer)
    return best


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # `bench.cli` imports its commands by name (importlib), never with an import statement
    assert "bench.options" in graph["bench.cli"]
    assert not any(m.startswith(("bench.timing", "bench.report")) for m in graph["bench.cli"])
    # a lazy import (inside a function) still counts: finite_diff imports the NumPy
    # model only inside a function
    tree = ast.parse((ROOT / "bench/agreement/finite_diff.py").read_text(encoding="utf-8"))
    nested = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              for n in ast.walk(f) if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "impls.numpy" for n in nested)
    assert "impls.numpy.model" in graph["bench.agreement.finite_diff"]


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph()
    cycles = _cycles(graph)
    detail = ["  " + " <-> ".join(c) + ": " + "; ".join(
        f"{a} imports {b} (line {graph[a][b]})" for a in c for b in c if b in graph[a])
        for c in cycles]
    assert not cycles, "import cycles (move the shared name below both):\n" + "\n".join(detail)


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in import_graph() if _unit(m)[1] < 0]
    assert not unplaced, f"modules in no layer (add them to LAYERS and docs/design.md): {unplaced}"


def test_no_upward_or_sideways_import_between_layers() -> None:
    bad = []
    for module, targets in sorted(import_graph().items()):
        unit, layer = _unit(module)
        for target, line in sorted(targets.items()):
            t_unit, t_layer = _unit(target)
            if t_unit != unit and t_layer >= layer:
                how = "upward" if t_layer > layer else "between peers"
                bad.append(f"{module} ({unit}) imports {target} ({t_unit}), {how}, line {line}")
    assert not bad, "imports against the layer order of docs/design.md §1:\n" + "\n".join(bad)


def test_the_layer_order_is_the_one_docs_design_states() -> None:
    text = (ROOT / "docs/design.md").read_text(encoding="utf-8")
    stated = re.search(r"<!-- layers -->\n```\n(.*?)```", text, re.S)
    assert stated, "docs/design.md §1 must state the layer order in a <!-- layers --> block"
    rows = [line.split("#")[0].split() for line in stated.group(1).splitlines()]
    assert tuple(tuple(r) for r in rows if r) == LAYERS


def test_modules_imported_by_name_exist() -> None:
    """The registries that import by name (so no import statement is seen above)."""
    from bench.cli import COMMANDS
    from bench.timing.executor import EXECUTORS

    modules = _modules()
    named = [module for _, module, _ in COMMANDS]
    named += [target.partition(":")[0] for target in EXECUTORS.values()]
    named += [f"impls.{name}" for name in BACKENDS]
    assert [m for m in named if m not in modules] == []
