"""Settings of conversational memory: which extractor, how duplicates are judged, which keys hold one value."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

__all__ = ["SINGLE_VALUED", "ExtractorName", "MemoryConfig"]

ExtractorName = Literal["auto", "constrained", "json", "rules"]

#: Keys a person has one value of at a time: a new value closes the old one. Glob patterns,
#: so ``family:*:age`` covers "my daughter is 5" and "my son is 8" separately.
SINGLE_VALUED: tuple[str, ...] = (
    "name",
    "age",
    "location",
    "hometown",
    "birthplace",
    "birth_year",
    "job",
    "employer",
    "diet",
    "studies",
    "relationship",
    "favorite:*",
    "family:*:age",
    "family:*:name",
    "family:children",
)


@dataclass(frozen=True)
class MemoryConfig:
    """How :class:`~tailorlm.memory.Memory` turns conversations into facts.

    Args:
        extractor: ``auto`` picks ``constrained`` when the generator can score choices (the
            local model), else ``json`` when there is a generator, else ``rules``.
            ``constrained``: deterministic rules first; clauses they cannot read go to the
            model, which may only pick a category from a closed set, and the value is a span
            copied from the user's words. ``json``: any generator writes JSON, validated
            against a pydantic schema, retried ``max_retries`` times, then rules.
            ``rules``: no model at all.
        source: stored in ``Fact.source``.
        dedupe_threshold: cosine similarity at or above which a new fact counts as a known
            one (only with an embedder; exact key/value and text matches always count).
        max_retries: extra attempts after a malformed JSON answer before falling back to rules.
        max_new_tokens: budget of one JSON answer.
        max_facts_per_turn: extraction stops after this many candidates (a pasted document
            is not a conversation about the user).
        calibrate: divide the model's category probabilities by those it gives a
            content-free sentence (contextual calibration; measured in DESIGN.md to
            matter a lot for the 135M model).
        single_valued: glob patterns of keys that hold one value at a time.

    Example:
        >>> MemoryConfig().is_single_valued("family:daughter:age"), MemoryConfig().is_single_valued("likes:jazz")
        (True, False)
    """

    extractor: ExtractorName = "auto"
    source: str = "chat"
    dedupe_threshold: float = 0.92
    max_retries: int = 1
    max_new_tokens: int = 256
    max_facts_per_turn: int = 20
    calibrate: bool = True
    single_valued: tuple[str, ...] = SINGLE_VALUED

    def __post_init__(self) -> None:
        if self.extractor not in ("auto", "constrained", "json", "rules"):
            raise ValueError(f"extractor must be auto, constrained, json or rules, got {self.extractor!r}")
        if not 0.0 < self.dedupe_threshold <= 1.0:
            raise ValueError(f"dedupe_threshold must be in (0, 1], got {self.dedupe_threshold}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.max_new_tokens < 16:
            raise ValueError(f"max_new_tokens must be >= 16, got {self.max_new_tokens}")
        if self.max_facts_per_turn < 1:
            raise ValueError(f"max_facts_per_turn must be >= 1, got {self.max_facts_per_turn}")
        if not self.source.strip():
            raise ValueError("source must be non-empty")
        object.__setattr__(self, "single_valued", tuple(self.single_valued))

    def is_single_valued(self, key: str) -> bool:
        return any(fnmatchcase(key, pattern) for pattern in self.single_valued)
