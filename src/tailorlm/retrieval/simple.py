"""Rankers that ignore the query: recency (the newest entries) and random (a seeded sample).

Both are baselines that any content-based ranker should beat, and recency is a
strong one for users whose taste drifts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from tailorlm.retrieval.base import Retrieved, check_k
from tailorlm.retrieval.history import HistoryEntry

__all__ = ["RandomRanker", "RecencyRanker"]


class RecencyRanker:
    """The k newest entries (undated entries last); score = 1 / (1 + position)."""

    name = "recency"

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        check_k(k)
        order = sorted(
            range(len(entries)),
            key=lambda i: (entries[i].timestamp is None, -(entries[i].timestamp or 0), i),
        )
        return [Retrieved(entries[i], 1.0 / (1 + pos)) for pos, i in enumerate(order[:k])]


class RandomRanker:
    """k entries drawn without replacement; the same (seed, query) always draws the same."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        check_k(k)
        digest = int.from_bytes(hashlib.sha1(f"{self.seed}:{query}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(digest)
        picks = rng.permutation(len(entries))[:k]
        return [Retrieved(entries[int(i)], 0.0) for i in picks]
