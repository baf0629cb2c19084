"""Hybrid retrieval: reciprocal rank fusion (Cormack et al. 2009) of sparse and dense rankings.

RRF needs no score calibration between BM25 and cosine similarity: each ranker
contributes 1 / (c + rank) per entry, c = 60 as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

from tailorlm.retrieval.base import Ranker, Retrieved, check_k
from tailorlm.retrieval.history import HistoryEntry

__all__ = ["HybridRanker"]


class HybridRanker:
    """Fuse several rankers' top lists by reciprocal rank."""

    name = "hybrid"

    def __init__(self, rankers: Sequence[Ranker], *, c: int = 60, depth: int = 50) -> None:
        if not rankers:
            raise ValueError("HybridRanker needs at least one ranker")
        self.rankers = list(rankers)
        self.c = c
        self.depth = depth

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        check_k(k)
        fused: dict[str, float] = {}
        by_id = {e.entry_id: e for e in entries}
        for ranker in self.rankers:
            for pos, hit in enumerate(ranker.rank(entries, query=query, k=max(k, self.depth))):
                fused[hit.entry.entry_id] = fused.get(hit.entry.entry_id, 0.0) + 1.0 / (self.c + pos + 1)
        top = sorted(fused, key=lambda i: -fused[i])[:k]
        return [Retrieved(by_id[i], fused[i]) for i in top]

    def forget(self, user_id: str) -> None:
        for ranker in self.rankers:
            if (forget := getattr(ranker, "forget", None)) is not None:
                forget(user_id)
