"""The shape of the code, read with the ast module: small modules, short functions, imports that
point down the layers, and tests that import helpers, not each other.

These are the project's standards (README, "How it is built"); checking them here keeps a split
module from growing back and a convenient import from tying the ground to the roof. Every
import counts, a lazy one inside a function as much as one at the top: both tie the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The code the standards cover (tests are exempt from the size limits, not from the import rule).
CHECKED = ["base", "lce", "extract", "warehouse", "app_pages", "app.py", "benchmarks",
           "dbt_project/models"]  # fmt: skip
# The project's own top-level packages (an import of anything else is a third-party one).
OWN = {"base", "lce", "extract", "warehouse", "app", "app_pages", "benchmarks", "tests"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Layers, bottom to top: base <- extract, warehouse <- lce <- app.py, app_pages. A package may
# import its own layer and those below, never one above; extract and warehouse are side by side
# (the lake's contract is in warehouse, which extract writes through) and warehouse never needs
# the engine. dbt's Python models run inside the build, so they import only warehouse and base.
FORBIDDEN = {
    "base": {"lce", "extract", "warehouse", "app", "app_pages"},
    "extract": {"lce", "app", "app_pages"},
    "warehouse": {"lce", "extract", "app", "app_pages"},
    "lce": {"app", "app_pages"},
    "dbt_project/models": {"lce", "extract", "app", "app_pages"},
}


def python_files(names: list[str]) -> Iterator[Path]:
    for name in names:
        path = REPO / name
        if path.is_file():
            yield path
        else:
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def imported_modules(path: Path, tree: ast.Module | None = None) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in the file, relative ones resolved against its
    package, so ``from .. import x`` counts as much as ``import pkg.x``."""
    package = path.relative_to(REPO).with_suffix("").parts[:-1]
    for node in ast.walk(tree or parse(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from pkg import module` imports pkg.module
                yield node.lineno, f"{module}.{alias.name}" if module else alias.name


def test_no_module_is_over_600_lines() -> None:
    long = {
        rel(p): n
        for p in python_files(CHECKED)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_80_lines() -> None:
    long = {}
    for path in python_files(CHECKED):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{rel(path)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down_the_layers(layer: str) -> None:
    assert list(python_files([layer])), f"no Python files under {layer}/"
    wrong = sorted(
        f"{rel(path)}:{line} imports {module}"
        for path in python_files([layer])
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN[layer]
    )
    assert not wrong, f"{layer}/ imports a layer above it: {wrong}"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (every import, lazy ones and those under
    TYPE_CHECKING included: a circle through either still ties two modules together)."""
    files = [p for p in python_files(CHECKED) if "dbt_project" not in p.parts]
    known = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        this = module_name(path)
        targets = set()
        for _, module in imported_modules(path):
            # `from pkg import name` yields pkg.name: keep the longest prefix that is a module
            parts = module.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and parts[0] in OWN and ".".join(parts) != this:
                targets.add(".".join(parts))
        graph[this] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted. A
    package's __init__ importing its own submodules is not a circle: packages are skipped."""
    packages = {m for m in graph if any(o.startswith(m + ".") for o in graph)}
    edges = {
        m: {t for t in ts if t not in packages} for m, ts in graph.items() if m not in packages
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    circles = cycles(import_graph())
    assert not circles, f"modules that import each other (directly or round a circle): {circles}"


def test_the_circle_check_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_test_module_imports_another() -> None:
    """Shared references and fixtures live in helper modules (tests/brute.py, tests/toy_lake.py,
    ...): importing a test module runs its collection-time code again and hides what is shared."""
    tests = REPO / "tests"
    test_modules = {p.stem for p in tests.glob("test_*.py")}
    wrong = []
    for path in python_files(["tests"]):
        tree = parse(path)
        for line, module in imported_modules(path, tree):
            parts = module.split(".")
            if parts[0] == "tests":
                parts = parts[1:]
            if parts and parts[0] in test_modules and parts[0] != path.stem:
                wrong.append(f"{rel(path)}:{line} imports {module}")
        for node in ast.walk(tree):  # pytest_plugins = ["tests.test_x"] imports it too
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets
            ):
                for const in ast.walk(node.value):
                    if (
                        isinstance(const, ast.Constant)
                        and isinstance(const.value, str)
                        and const.value.split(".")[-1] in test_modules
                    ):
                        wrong.append(f"{rel(path)}:{node.lineno} plugin {const.value}")
    assert not wrong, f"test modules imported by others (move the helper out): {wrong}"


def test_the_checks_see_the_code() -> None:
    """Guards the guards: an empty file list or a missed import would make every check pass."""
    files = list(python_files(CHECKED))
    assert len(files) > 30 and REPO / "app.py" in files
    assert any(REPO / "lce" in p.parents for p in files)
    modules = {m for _, m in imported_modules(REPO / "tests" / "test_code_shape.py")}
    assert {"ast", "pytest", "pathlib.Path"} <= modules
