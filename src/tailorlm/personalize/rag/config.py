"""Configuration of retrieval-augmented personalization."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailorlm.personalize.base import MethodConfig
from tailorlm.personalize.types import Need

RETRIEVERS = ("bm25", "dense", "hybrid", "recency", "random")


@dataclass
class RagConfig(MethodConfig):
    """Retrieve from the user's own history into the prompt (LaMP, Salemi et al. 2023).

    Args:
        retriever: bm25 | dense | hybrid (reciprocal rank fusion of bm25 and dense) | recency | random.
        k: entries to retrieve.
        min_user_items: fewer eligible own entries than this and the user is served
            from the persona, then the global pool (cold start).
        persona_by: user attribute defining personas for the fallback, "cluster", or None.
        snippet_chars: each retrieved text is cut to this many characters.
        seed: for the random retriever.
    """

    retriever: str = field(default="bm25", metadata={"help": "bm25 | dense | hybrid | recency | random"})
    k: int = field(default=4, metadata={"help": "entries to retrieve"})
    min_user_items: int = field(default=1, metadata={"help": "cold-start threshold for user scope"})
    persona_by: str | None = field(default=None, metadata={"help": "attribute or 'cluster' for fallback"})
    snippet_chars: int = field(default=300, metadata={"help": "characters kept per retrieved text"})
    seed: int = field(default=0, metadata={"help": "seed of the random retriever"})

    def __post_init__(self) -> None:
        if self.retriever not in RETRIEVERS:
            raise ValueError(f"retriever must be one of {RETRIEVERS}, got {self.retriever!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.min_user_items < 0:
            raise ValueError(f"min_user_items must be >= 0, got {self.min_user_items}")
        if self.snippet_chars < 20:
            raise ValueError(f"snippet_chars must be >= 20, got {self.snippet_chars}")

    def needs(self) -> set[Need]:
        dense = self.retriever in ("dense", "hybrid") or self.persona_by == "cluster"
        return {"embedder"} if dense else set()
