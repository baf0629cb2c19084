"""The data layer's import rules, read from the source (every import: top level, in functions, TYPE_CHECKING).

- ``tailorlm.data`` is the bottom layer: it imports only from ``tailorlm.data``,
  ``tailorlm.errors`` and ``tailorlm.settings``.
- A module inside a package imports its siblings directly, never through its own
  package's ``__init__`` (``from tailorlm.data import User`` inside ``tailorlm/data/``).
- No import cycles among the modules of ``tailorlm.data``, ``__init__`` files included.
- Each module imports on its own in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tailorlm.data

DATA_DIR = Path(tailorlm.data.__file__).parent
ALLOWED_OUTSIDE = ("tailorlm.errors", "tailorlm.settings")


def _module_name(path: Path) -> str:
    parts = ["tailorlm", "data", *path.relative_to(DATA_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(DATA_DIR.rglob("*.py"))}


def _package(module: str) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to itself)."""
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = _package(module).split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


def _edges(module: str) -> set[str]:
    """The tailorlm.data modules ``module`` imports.

    ``from pkg import x`` is an edge to ``pkg`` (its ``__init__``), and to ``pkg.x``
    too when that is a submodule; ``import pkg.sub`` is an edge to ``pkg.sub``.
    """
    out: set[str] = set()
    for target, names in _imports(module):
        if target in MODULES:
            out.add(target)
            out.update(f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES)
    out.discard(module)
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_data_imports_only_the_allowed_layers(module: str) -> None:
    bad = [
        target
        for target, _ in _imports(module)
        if target.startswith("tailorlm")
        and not target.startswith("tailorlm.data")
        and not target.startswith(ALLOWED_OUTSIDE)
    ]
    assert not bad, f"{module} imports {bad}: tailorlm.data may use only itself, {ALLOWED_OUTSIDE}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_through_own_package_init(module: str) -> None:
    """Inside a package, ``from <that package> import X`` runs its ``__init__``: a cycle waiting to happen."""
    packages = [p for p in MODULES if MODULES[p].name == "__init__.py" and (module + ".").startswith(p + ".")]
    bad = [(target, names) for target, names in _imports(module) if target in packages]
    assert not bad, f"{module} imports through its own package's __init__: {bad}; import the sibling module"


def test_no_import_cycles() -> None:
    graph = {m: _edges(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*path[path.index(n) :], n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Whatever is imported first, the package's own import order must not trip over itself."""
    procs = {
        module: subprocess.Popen(
            [sys.executable, "-c", f"import {module}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for module in sorted(MODULES)
    }
    failed = {}
    for module, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failed[module] = err.strip().splitlines()[-1]
    assert not failed, failed
