"""Architecture guard: layering, import cycles and size limits of ``src/tailorlm``.

Static only: the source files are parsed with :mod:`ast`; no ``tailorlm`` module is imported.
Each check lists every violation at once, so one run gives the whole work plan.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tailorlm"

# Layers of the top-level parts of src/tailorlm (subpackages and top-level modules), bottom to top.
# RULE: a module may import (anywhere: module level, inside functions, under `if TYPE_CHECKING:`)
# only from its own part or from a part of a strictly LOWER layer. Imports sideways (same layer)
# or upwards fail unless the (importer, imported) pair is listed in ALLOWED_SAME_LAYER.
# The root package `tailorlm/__init__.py` sits above everything (it re-exports), and no other
# module may import it (`import tailorlm`, or `from tailorlm import X` where X is not a module).
# A new part must be added here: pick the lowest layer above everything it imports.
# fmt: off
LAYERS: dict[str, int] = {
    "errors": 0, "_version": 0, "settings": 0,
    "data": 1,
    "models": 2,
    "adapters": 3, "retrieval": 3, "tasks": 3,
    "personalize": 4, "memory": 4,
    "eval": 5,
    "serve": 6,
    "demo": 7, "testing": 7,  # demo: the `make demo` walkthrough; testing: fakes for tests
    "cli": 8,
}
# fmt: on
# Deliberate sideways imports between two parts of the same layer: {("importer", "imported")}.
ALLOWED_SAME_LAYER: set[tuple[str, str]] = set()

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
LONG_MARKER = "# long:"  # on the line right above a def (or its decorators), followed by the reason


Function = ast.FunctionDef | ast.AsyncFunctionDef
Graph = dict[str, dict[str, int]]  # module -> {imported module: first line importing it}


@dataclass(frozen=True)
class Import:
    line: int
    base: str  # absolute dotted name: `import base` or `from base import names`
    names: tuple[str, ...] | None  # None for a plain `import`


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "tailorlm.data.store"; a package is named after its __init__
    rel: str  # path shown in messages, e.g. "src/tailorlm/data/store.py"
    is_package: bool
    lines: list[str]
    imports: list[Import]  # every import of the file, at any depth
    functions: list[Function]  # every def, methods and nested ones included

    @property
    def part(self) -> str | None:  # the top-level part ("data", "cli", ...); None for the root package
        return self.name.split(".")[1] if "." in self.name else None


def _scan(tree: ast.Module, package: str) -> tuple[list[Import], list[Function]]:
    """One walk over the tree; `package` resolves relative imports."""
    imports: list[Import] = []
    functions: list[Function] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [Import(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, node.module] if node.module else kept)
            imports.append(Import(node.lineno, base, tuple(alias.name for alias in node.names)))
        elif isinstance(node, Function):
            functions.append(node)
    return imports, functions


def load_modules(src: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name, text, rel = ".".join(parts), path.read_text(encoding="utf-8"), path.relative_to(src.parent).as_posix()
        imports, functions = _scan(ast.parse(text, filename=rel), name if is_package else name.rpartition(".")[0])
        modules[name] = Module(name, rel, is_package, text.splitlines(), imports, functions)
    return modules


def imports_of(module: Module, modules: dict[str, Module]) -> Iterator[tuple[int, str]]:
    """(line, imported tailorlm module); `from p import name` means p.name when that is a module, else p.

    A target missing from `modules` is a stale import (the module was moved or removed).
    """
    for imp in module.imports:
        if imp.base == PACKAGE or imp.base.startswith(f"{PACKAGE}."):
            for name in imp.names or (None,):
                candidate = f"{imp.base}.{name}"
                yield imp.line, candidate if name and candidate in modules else imp.base


def import_graph(modules: dict[str, Module]) -> Graph:
    graph: Graph = {name: {} for name in modules}
    for name, module in modules.items():
        for line, target in imports_of(module, modules):
            if target in modules:
                graph[name].setdefault(target, line)
    return graph


Problem = tuple[str, int, str]  # (file, line, what); sorted by file then line number


def _lines(problems: set[Problem]) -> list[str]:
    return [f"{rel}:{line}: {what}" if line else f"{rel}: {what}" for rel, line, what in sorted(problems)]


def layer_violations(modules: dict[str, Module], layers: dict[str, int], allowed: set[tuple[str, str]]) -> list[str]:
    problems: set[Problem] = set()
    for pair in allowed:
        if pair[0] not in layers or layers[pair[0]] != layers.get(pair[1]):
            problems.add(("ALLOWED_SAME_LAYER", 0, f"{pair} is not a pair of listed parts of the same layer"))
    for module in modules.values():
        if module.part is not None and module.part not in layers:
            hint = "add it to LAYERS at the top of tests/test_architecture.py (lowest layer above all it imports)"
            problems.add((f"{PACKAGE}.{module.part}", 0, f"part not in LAYERS; {hint}"))
        if module.part is None:  # the root package re-exports from everything
            continue
        for line, target in imports_of(module, modules):
            if target not in modules:
                problems.add((module.rel, line, f"imports {target}, which is not in the tree (moved or removed?)"))
                continue
            if "." not in target:
                problems.add((module.rel, line, f"imports the root package {target!r}; import the defining module"))
                continue
            part = target.split(".")[1]
            mine, theirs = layers.get(module.part, -1), layers.get(part, -1)  # -1: unlisted, reported above
            if -1 < mine <= theirs and part != module.part and (module.part, part) not in allowed:
                problems.add((module.rel, line, f"{module.part} (layer {mine}) imports {target} (layer {theirs})"))
    return _lines(problems)


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: list[str] = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _example_cycle(start: str, members: set[str], graph: Graph) -> list[str]:
    """A shortest path start -> ... -> start inside the component (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for succ in sorted(graph[node]):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if succ in members and succ not in parents:
                    parents[succ] = node
                    nxt.append(succ)
        frontier = nxt
    return [start, start]


def cycle_violations(modules: dict[str, Module]) -> list[str]:
    graph = import_graph(modules)
    problems: list[str] = []
    for component in strongly_connected(graph):
        head = component[0]
        if len(component) == 1 and (head not in graph[head] or modules[head].is_package):
            continue
        path = _example_cycle(head, set(component), graph)
        steps = " -> ".join(f"{a} ({modules[a].rel}:{graph[a][b]})" for a, b in pairwise(path))
        problems.append(f"cycle among {', '.join(component)}\n    e.g. {steps} -> {head}")
    return sorted(problems)


def size_violations(modules: dict[str, Module], max_module: int, max_function: int) -> list[str]:
    problems: set[Problem] = set()
    for module in modules.values():
        if len(module.lines) > max_module:
            problems.add((module.rel, 0, f"module has {len(module.lines)} lines (max {max_module})"))
        for node in module.functions:
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = module.lines[first - 2].strip() if first >= 2 else ""
            excused = above.startswith(LONG_MARKER) and above[len(LONG_MARKER) :].strip()
            if length > max_function and not excused:
                problems.add((module.rel, node.lineno, f"def {node.name}() has {length} lines (max {max_function})"))
    return _lines(problems)


def _report(title: str, problems: list[str]) -> str:
    return f"{len(problems)} {title}:\n" + "\n".join(f"  {p}" for p in problems)


@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    return load_modules(SRC)


def test_layers(tree: dict[str, Module]) -> None:
    problems = layer_violations(tree, LAYERS, ALLOWED_SAME_LAYER)
    assert not problems, _report("layering violations (see LAYERS in tests/test_architecture.py)", problems)


def test_no_import_cycles(tree: dict[str, Module]) -> None:
    problems = cycle_violations(tree)
    assert not problems, _report("import cycles (break each one, e.g. import the defining submodule)", problems)


def test_sizes(tree: dict[str, Module]) -> None:
    problems = size_violations(tree, MAX_MODULE_LINES, MAX_FUNCTION_LINES)
    assert not problems, _report(f"size violations (or mark a function with '{LONG_MARKER} <reason>')", problems)


def test_checker_detects_violations(tmp_path: Path) -> None:
    """The checkers can fail: a synthetic tree with one violation of every kind."""
    body = "".join(f"    x = {i}\n" for i in range(89))
    files = {
        "__init__.py": "from tailorlm.lower import thing\n",
        "lower/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..upper import thing\n",
        "lower/rooted.py": "def f():\n    import tailorlm\n    from tailorlm.gone import x\n",
        "upper/__init__.py": "thing = 1\n",
        "mystery.py": "",
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from tailorlm import a\n",
        "data/__init__.py": "from .store import Store\n",
        "data/store.py": "from ._migrations import migrate\nclass Store: ...\n",
        "data/_migrations.py": "from tailorlm.data import Store\nmigrate = Store\n",
        "big.py": f"def long():\n{body}\n\n# long: a fixture\ndef excused():\n{body}" + "\n" * 400,
    }
    for rel, text in files.items():
        (tmp_path / "src" / PACKAGE / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / PACKAGE / rel).write_text(text, encoding="utf-8")
    modules = load_modules(tmp_path / "src")
    layers = {"lower": 0, "upper": 1, "a": 2, "b": 2, "data": 0, "big": 0}

    layer_text = "\n".join(layer_violations(modules, layers, set()))
    assert "src/tailorlm/lower/__init__.py:3: lower (layer 0) imports tailorlm.upper (layer 1)" in layer_text
    assert "src/tailorlm/lower/rooted.py:2: imports the root package" in layer_text
    assert "src/tailorlm/lower/rooted.py:3: imports tailorlm.gone, which is not in the tree" in layer_text
    assert "tailorlm.mystery: part not in LAYERS" in layer_text
    assert "a (layer 2) imports tailorlm.b" in layer_text and "b (layer 2) imports tailorlm.a" in layer_text
    assert "b (layer 2) imports tailorlm.a" not in "\n".join(layer_violations(modules, layers, {("b", "a")}))

    cycles = cycle_violations(modules)
    assert len(cycles) == 2, cycles
    assert cycles[0].startswith("cycle among tailorlm.a, tailorlm.b")
    assert "tailorlm.data, tailorlm.data._migrations, tailorlm.data.store" in cycles[1]

    sizes = size_violations(modules, 500, 80)
    assert sizes == [
        "src/tailorlm/big.py: module has 583 lines (max 500)",
        "src/tailorlm/big.py:1: def long() has 90 lines (max 80)",
    ], sizes
