"""The package's layering, checked from the source: no import cycles, pure layers import nothing above them, and the
command line talks only to library entry points."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "infertune"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """infertune modules imported by a file (``TYPE_CHECKING`` blocks excluded; lazy imports inside functions
    included unless ``top_level_only``)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith("infertune") and not (top_level_only and in_function):
                    # "from infertune import tasks" names a module: the edge goes to it (a parent package is
                    # imported first, as for any submodule import, which is not counted); other names come from
                    # the module itself.
                    for alias in child.names:
                        target = ROOT.parent / (child.module + "." + alias.name).replace(".", "/")
                        if target.is_dir() or target.with_suffix(".py").exists():
                            found.add(child.module + "." + alias.name)
                        else:
                            found.add(child.module)
            elif isinstance(child, ast.Import) and not (top_level_only and in_function):
                found.update(a.name for a in child.names if a.name.startswith("infertune"))
            visit(child, nested)

    visit(tree, False)
    return found


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def test_no_import_cycles():
    """Counting lazy imports inside functions too: a cycle hidden in a function is still two modules that need each
    other. (A package's __init__ importing its submodules is an edge like any other.)"""
    graph = {m: {i for i in _imports(p, top_level_only=False) if i in MODULES and i != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


@pytest.mark.parametrize("layer, allowed", [
    ("infertune.estimators", {"infertune.estimators"}),
    ("infertune.objectives", {"infertune.objectives", "infertune.estimators", "infertune.registry"}),
])
def test_pure_layers_import_nothing_above_them(layer, allowed):
    """Estimators and objectives are pure computation: nothing from the rest of the package (objectives may use the
    estimators and the one registry), not even lazily."""
    for name, path in MODULES.items():
        if name == layer or name.startswith(layer + "."):
            for imported in _imports(path, top_level_only=False):
                assert any(imported == a or imported.startswith(a + ".") for a in allowed), (name, imported)


def test_the_cli_imports_only_library_entry_points():
    """Entry points are infertune's top-level modules and packages (infertune.X), never their inner modules."""
    for imported in _imports(MODULES["infertune.cli"], top_level_only=False):
        assert imported.count(".") == 1, f"cli imports {imported}; use the package's public entry point"


def test_tasks_never_import_verifiers_or_workflows():
    """Tasks own their grading; verifiers consume tasks, never the other way round."""
    for name, path in MODULES.items():
        if name.startswith("infertune.tasks"):
            for imported in _imports(path, top_level_only=False):
                assert not imported.startswith(("infertune.verify", "infertune.train", "infertune.evaluation",
                                                "infertune.planning", "infertune.demo")), (name, imported)


def test_curves_are_computed_only_by_the_estimators_and_the_evaluation_core():
    """Every consumer (report, trainer, demo, planner) goes through infertune.evaluation; none calls a curve
    function of the estimators itself."""
    import re

    call = re.compile(r"\b(pass_curve|bon_curve|maj_curve|weighted_maj_curve|stop_curves)\(")
    for name, path in MODULES.items():
        if name.startswith(("infertune.estimators", "infertune.evaluation")):
            continue
        assert not call.search(path.read_text()), f"{name} computes a curve itself"
