"""tailorlm: personalize large language models for their users.

User data (documents, attributes, interactions, pair-wise preferences) lives in
one :class:`~tailorlm.data.Store`; personalization methods turn it into model
input; model backends (:mod:`tailorlm.models`) generate; tasks and evaluation
measure the result against non-personalized baselines.

Importing ``tailorlm`` is cheap: torch, transformers and sentence-transformers
load only when a model is built.
"""

from typing import TYPE_CHECKING, Any

from tailorlm._version import __version__

if TYPE_CHECKING:
    from tailorlm.data import Artifact, Document, Fact, Interaction, Item, Preference, Store, TaskExample, User
    from tailorlm.settings import Settings, load_settings

# Public names resolve lazily, so `import tailorlm.models` (or the CLI) does not pay for
# SQLAlchemy and pydantic models it may not need.
_LAZY = {
    **dict.fromkeys(
        ("Artifact", "Document", "Fact", "Interaction", "Item", "Preference", "Store", "TaskExample", "User"),
        "tailorlm.data",
    ),
    "Settings": "tailorlm.settings",
    "load_settings": "tailorlm.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tailorlm' has no attribute {name!r}")


__all__ = [
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
