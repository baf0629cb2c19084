"""Conversational memory: durable facts about each user, extracted from what they say.

``Memory(store, generator).observe(user_id, messages)`` extracts facts from the user's own
messages (schema-constrained with the local model, validated JSON with other backends,
rules as the fallback), skips repeats, closes contradicted facts instead of overwriting
them, and applies "forget ..." requests. Facts are retrieved like any other user data:
``load_history(store, user_id=..., source="facts")``.
"""

from tailorlm.memory.config import MemoryConfig
from tailorlm.memory.extract import LABELS, Extracted, Extractor
from tailorlm.memory.memory import Memory, MemoryUpdate
from tailorlm.memory.schema import CATEGORIES, Candidate, ExtractedFact, Extraction

__all__ = [
    "CATEGORIES",
    "LABELS",
    "Candidate",
    "Extracted",
    "ExtractedFact",
    "Extraction",
    "Extractor",
    "Memory",
    "MemoryConfig",
    "MemoryUpdate",
]
