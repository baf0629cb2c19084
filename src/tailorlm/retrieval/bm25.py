"""Sparse retrieval (BM25 via ``bm25s``) over one user's history entries.

The index is built over the candidate entries and kept in a small LRU keyed by a
128-bit BLAKE2b digest of the exact ``(user, id, title, text)`` of every candidate, so
repeated queries over the same history (a user's session, a persona pool) reuse it, and
any change (a new document, an edited text, a different time filter) yields a fresh
index, never a stale one: no invalidation is needed. The digest, not the entries, is
kept: holding every cached entry's text alive cost more than the indexes themselves
(2.0 vs 1.6 MB for 8,180 cached entries). A new index
replaces the cached one over the same set of users, so the cache holds one version of
each history, not every version a growing history went through.

Entries with no indexable token (a review reading "A+" or "!!!": stop words, punctuation,
one-letter words) are normal in real data. ``bm25s`` indexes them fine next to other
entries but cannot index a corpus made only of them (it divides by a mean length of 0
and takes ``max()`` of an empty vocabulary), so such a corpus gets no index: ranking it
returns nothing, and that outcome is cached like an index so it is not retried per query.
"""

from __future__ import annotations

import functools
import hashlib
import threading
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
        cache_size: how many built indexes to keep (LRU).
        cache_entries: how many indexed entries the kept indexes may hold in all (LRU): the
            bound on the cache's memory (an index costs ~1-2 KB per entry, most of it its
            vocabulary), whatever the length of the histories; an index over more entries
            than this is built per call and not kept.

    Example:
        >>> es = [HistoryEntry("doc:1", "u", "guitar strings sound bright", "review"),
        ...       HistoryEntry("doc:2", "u", "a sturdy keyboard stand", "review")]
        >>> [r.entry.entry_id for r in BM25Ranker().rank(es, query="strings", k=1)]
        ['doc:1']
    """

    name = "bm25"

    def __init__(
        self,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stopwords: str | None = "en",
        cache_size: int = 64,
        cache_entries: int = 8192,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords
        self.cache_size = cache_size
        self.cache_entries = cache_entries
        self.builds = 0  # indexes built so far (cache misses); read by tests and benchmarks
        # digest of the entries -> (how many, index or None when nothing is indexable, users in it)
        self._indexes: OrderedDict[bytes, tuple[int, Any | None, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()  # the service ranks from several request threads

    def _index(self, entries: Sequence[HistoryEntry]) -> Any | None:
        """The (cached) index over ``entries``; None when no entry has an indexable token."""
        import bm25s

        _quiet_bm25s()
        key = _digest(entries)
        with self._lock:
            hit = self._indexes.get(key)
            if hit is not None:
                self._indexes.move_to_end(key)
                return hit[1]
        corpus = bm25s.tokenize([_entry_text(e) for e in entries], stopwords=self.stopwords, show_progress=False)
        index: Any | None = None
        if corpus.vocab:  # bm25s cannot build an index without a single token (see the module doc)
            index = bm25s.BM25(k1=self.k1, b=self.b)
            index.index(corpus, show_progress=False)
        users = frozenset(e.user_id for e in entries)
        with self._lock:
            # An index over the same users' older entries is superseded: their history changed
            # (a new document) and no query will ask for the old one again. Kept, the LRU filled
            # with stale versions of every growing history (the soak benchmark's RSS creep).
            for old in [k for k, (_, _, u) in self._indexes.items() if u == users]:
                del self._indexes[old]
            self.builds += 1
            if len(entries) <= self.cache_entries:
                self._indexes[key] = (len(entries), index, users)
            held = sum(n for n, _, _ in self._indexes.values())
            while self._indexes and (len(self._indexes) > self.cache_size or held > self.cache_entries):
                held -= self._indexes.popitem(last=False)[1][0]
        return index

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        check_k(k)
        if not entries:
            return []
        import bm25s

        index = self._index(entries)
        if index is None:  # no entry has an indexable token: nothing can match
            return []
        q = bm25s.tokenize([query], stopwords=self.stopwords, show_progress=False)
        if not q.vocab:  # the query has no indexable token (e.g. only stop words)
            return []
        # n_threads=0 scores in this thread; n_threads=1 would start a one-thread pool per call.
        ids, scores = index.retrieve(q, k=min(k, len(entries)), show_progress=False, n_threads=0)
        hits = [Retrieved(entries[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True)]
        return [h for h in hits if h.score > 0]

    def forget(self, user_id: str) -> None:
        """Drop every cached index that holds text of ``user_id`` (after a deletion)."""
        with self._lock:
            for key in [k for k, (_, _, users) in self._indexes.items() if user_id in users]:
                del self._indexes[key]


def _digest(entries: Sequence[HistoryEntry]) -> bytes:
    """128 bits over the entries' own digests (``HistoryEntry.digest``: user, id, title and
    text, length-prefixed), in order, so no two different candidate lists are keyed alike."""
    return hashlib.blake2b(b"".join(e.digest for e in entries), digest_size=16).digest()


@functools.cache
def _quiet_bm25s() -> None:
    """bm25s sets its own logger to DEBUG; once any library adds a root handler (rouge-score's
    absl does), every index build would print a line. Warnings still come through."""
    import logging

    logging.getLogger("bm25s").setLevel(logging.WARNING)
