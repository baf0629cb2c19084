"""The ranker contract: score one user's history entries against a query.

Rankers never fetch data themselves; callers pass entries that
:func:`~tailorlm.retrieval.history.load_history` read for exactly one user, so
the isolation and leakage guarantees are enforced in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tailorlm.retrieval.history import HistoryEntry

__all__ = ["Ranker", "Retrieved", "check_k"]


@dataclass(frozen=True)
class Retrieved:
    """One history entry and its score under the ranker that found it (higher is better)."""

    entry: HistoryEntry
    score: float


@runtime_checkable
class Ranker(Protocol):
    name: str

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        """The top ``k`` entries for ``query``, best first (fewer if fewer are relevant)."""
        ...


def check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
