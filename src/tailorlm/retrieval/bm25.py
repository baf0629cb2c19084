"""Sparse retrieval (BM25 via ``bm25s``) over one user's history entries.

The index is built over the candidate entries and kept in a small LRU keyed by a
fingerprint of those entries (user, id and text of each), so repeated queries over
the same history (a user's session, a persona pool) reuse it, and any change to
the history (a new document, an edited text) yields a new key: no invalidation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from tailorlm.retrieval.base import Retrieved, check_k
from tailorlm.retrieval.history import HistoryEntry

__all__ = ["BM25Ranker"]


def _entry_text(e: HistoryEntry) -> str:
    return f"{e.title}. {e.text}" if e.title and e.title not in e.text else e.text


class BM25Ranker:
    """Top-k entries by BM25 against the query text; entries scoring 0 are not returned.

    Args:
        k1, b: BM25 parameters (bm25s defaults).
        stopwords: stop-word list name for ``bm25s.tokenize`` ("en") or None.

    Example:
        >>> es = [HistoryEntry("doc:1", "u", "guitar strings sound bright", "review"),
        ...       HistoryEntry("doc:2", "u", "a sturdy keyboard stand", "review")]
        >>> [r.entry.entry_id for r in BM25Ranker().rank(es, query="strings", k=1)]
        ['doc:1']
    """

    name = "bm25"

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en", cache_size: int = 64) -> None:
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords
        self.cache_size = cache_size
        self._indexes: OrderedDict[int, Any] = OrderedDict()

    def _index(self, entries: Sequence[HistoryEntry]) -> Any:
        import bm25s

        key = hash(tuple((e.user_id, e.entry_id, e.text, e.title) for e in entries))
        if (index := self._indexes.get(key)) is not None:
            self._indexes.move_to_end(key)
            return index
        corpus = bm25s.tokenize([_entry_text(e) for e in entries], stopwords=self.stopwords, show_progress=False)
        index = bm25s.BM25(k1=self.k1, b=self.b)
        index.index(corpus, show_progress=False)
        self._indexes[key] = index
        if len(self._indexes) > self.cache_size:
            self._indexes.popitem(last=False)
        return index

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        check_k(k)
        if not entries:
            return []
        import bm25s

        index = self._index(entries)
        q = bm25s.tokenize([query], stopwords=self.stopwords, show_progress=False)
        if not q.vocab:  # the query has no indexable token (e.g. only stop words)
            return []
        ids, scores = index.retrieve(q, k=min(k, len(entries)), show_progress=False, n_threads=1)
        hits = [Retrieved(entries[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True)]
        return [h for h in hits if h.score > 0]
