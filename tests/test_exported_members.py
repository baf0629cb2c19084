"""The public surface: every exported name resolves, and the top-level list is pinned."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "tailorlm",
    "tailorlm.data",
    "tailorlm.data.loaders",
    "tailorlm.models",
    "tailorlm.retrieval",
    "tailorlm.personalize",
    "tailorlm.tasks",
    "tailorlm.eval",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing


def test_top_level_exports_are_pinned() -> None:
    import tailorlm

    assert sorted(tailorlm.__all__) == sorted(
        [
            "Artifact",
            "Document",
            "Fact",
            "Interaction",
            "Item",
            "Preference",
            "Settings",
            "Store",
            "TaskExample",
            "User",
            "__version__",
            "load_settings",
        ]
    )


def test_light_imports_do_not_load_torch() -> None:
    """The CLI and data layer must start fast: no torch, transformers or sentence-transformers."""
    code = (
        "import sys, tailorlm, tailorlm.cli, tailorlm.models, tailorlm.personalize, tailorlm.eval; "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
