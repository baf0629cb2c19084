"""Ranking a single user's own history for a query (per user, so cost does not grow with user count)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailorlm.retrieval.base import Ranker, Retrieved
from tailorlm.retrieval.bm25 import BM25Ranker
from tailorlm.retrieval.dense import DenseRanker
from tailorlm.retrieval.history import HistoryEntry, load_history
from tailorlm.retrieval.hybrid import HybridRanker
from tailorlm.retrieval.simple import RandomRanker, RecencyRanker

if TYPE_CHECKING:
    from tailorlm.data import Store
    from tailorlm.models.base import Embedder

__all__ = [
    "BM25Ranker",
    "DenseRanker",
    "HistoryEntry",
    "HybridRanker",
    "RandomRanker",
    "Ranker",
    "RecencyRanker",
    "Retrieved",
    "build_ranker",
    "load_history",
]


def build_ranker(name: str, *, store: Store | None = None, embedder: Embedder | None = None, seed: int = 0) -> Ranker:
    """A ranker by name: bm25 | dense | hybrid | recency | random."""
    if name == "bm25":
        return BM25Ranker()
    if name in ("dense", "hybrid"):
        if embedder is None:
            raise ValueError(f"the {name!r} retriever needs an embedder")
        dense = DenseRanker(embedder, store=store)
        return dense if name == "dense" else HybridRanker([BM25Ranker(), dense])
    if name == "recency":
        return RecencyRanker()
    if name == "random":
        return RandomRanker(seed=seed)
    raise ValueError(f"unknown retriever {name!r}; use bm25, dense, hybrid, recency or random")
