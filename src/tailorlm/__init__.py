"""tailorlm: personalize large language models for their users.

User data (documents, attributes, interactions, pair-wise preferences) lives in
one :class:`~tailorlm.data.Store`; personalization methods turn it into model
input; model backends (:mod:`tailorlm.models`) generate; tasks and evaluation
measure the result against non-personalized baselines.

Importing ``tailorlm`` is cheap: torch, transformers and sentence-transformers
load only when a model is built.
"""

from tailorlm.data import (
    Artifact,
    Document,
    Fact,
    Interaction,
    Item,
    Preference,
    Store,
    TaskExample,
    User,
)
from tailorlm.settings import Settings, load_settings

__version__ = "0.1.0"

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
