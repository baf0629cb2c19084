"""Dense retrieval: cosine similarity of embedder vectors, cached in the store per model.

Vectors are stored under the entry id with the embedder's name and version and a
hash of the text, so a changed text is re-embedded and vectors of another model
are never read. Scoring one user's entries is exact (one matrix-vector product):
no approximate index is needed at per-user sizes. A pooled (cross-user) list of at
least ``ann_min_entries`` entries, as persona and global scope pass, is searched with
``Store.nearest`` instead when the store has an ANN index (pgvector HNSW): exact
search over a whole population costs a pass over every vector per query. The index
may hold vectors outside the list (other tasks' documents, entries after a time
cut-off), so it is asked for ``k * ann_overfetch`` hits filtered to the list's users,
hits outside the list are dropped, and too few left falls back to exact scoring.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from tailorlm.data import Store
from tailorlm.models.base import Embedder
from tailorlm.retrieval.base import Retrieved, check_k
from tailorlm.retrieval.history import HistoryEntry

__all__ = ["DenseRanker"]


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class DenseRanker:
    """Top-k entries by cosine similarity between the query and entry embeddings.

    Args:
        embedder: any :class:`~tailorlm.models.Embedder` (normalized vectors).
        store: where vectors are cached; None keeps them in memory only.
        ann_min_entries: a cross-user list at least this long uses the store's ANN index
            (where it has one); shorter lists and one user's entries are scored exactly.
        ann_overfetch: index hits asked per wanted hit, to survive filtering to the list.
    """

    name = "dense"

    def __init__(
        self,
        embedder: Embedder,
        *,
        store: Store | None = None,
        ann_min_entries: int = 2000,
        ann_overfetch: int = 4,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.ann_min_entries = ann_min_entries
        self.ann_overfetch = max(1, ann_overfetch)
        self._memory: dict[tuple[str, str], tuple[str, np.ndarray]] = {}  # (user, entry) -> (hash, vec)

    def vectors(self, entries: Sequence[HistoryEntry]) -> np.ndarray:
        """One row per entry, from memory, then the store, then the embedder."""
        hashes = [_hash(e.text) for e in entries]
        missing: dict[str, list[int]] = defaultdict(list)
        out = np.zeros((len(entries), self.embedder.dim), dtype=np.float32)
        for i, (e, h) in enumerate(zip(entries, hashes, strict=True)):
            hit = self._memory.get((e.user_id, e.entry_id))
            if hit is not None and hit[0] == h:
                out[i] = hit[1]
            else:
                missing[e.user_id].append(i)
        for user_id, idx in missing.items():
            todo = idx
            if self.store is not None:
                ids, mat, stored_hashes = self.store.get_embeddings(
                    user_id=user_id,
                    model=self.embedder.name,
                    doc_ids=[entries[i].entry_id for i in idx],
                )
                found = {d: (row, sh) for d, row, sh in zip(ids, mat, stored_hashes, strict=True)}
                todo = []
                for i in idx:
                    row_hash = found.get(entries[i].entry_id)
                    if row_hash is not None and row_hash[1] == hashes[i]:
                        out[i] = row_hash[0]
                        self._memory[(user_id, entries[i].entry_id)] = (hashes[i], row_hash[0])
                    else:
                        todo.append(i)
            if todo:
                vecs = self.embedder.embed([entries[i].text for i in todo])
                for i, v in zip(todo, vecs, strict=True):
                    out[i] = v
                    self._memory[(user_id, entries[i].entry_id)] = (hashes[i], v)
                if self.store is not None:
                    self.store.put_embeddings(
                        user_id=user_id,
                        model=self.embedder.name,
                        version=self.embedder.version,
                        doc_ids=[entries[i].entry_id for i in todo],
                        vectors=vecs,
                        texts=[entries[i].text for i in todo],
                    )
        return out

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        check_k(k)
        if not entries:
            return []
        if self._indexed(entries):
            hits = self._rank_ann(entries, query=query, k=k)
            if hits is not None:
                return hits
        mat = self.vectors(entries)
        q = self.embedder.embed([query])[0]
        scores = mat @ q
        top = np.argsort(-scores, kind="stable")[:k]
        return [Retrieved(entries[int(i)], float(scores[i])) for i in top]

    def _indexed(self, entries: Sequence[HistoryEntry]) -> bool:
        """A long cross-user list, and a store whose ``nearest`` uses an ANN index."""
        if self.store is None or len(entries) < self.ann_min_entries or not self.store.ann.available:
            return False
        first = entries[0].user_id
        return any(e.user_id != first for e in entries)

    def _rank_ann(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved] | None:
        """Top-k through the store's index; None when too few hits fall inside ``entries``."""
        assert self.store is not None
        # Entries this ranker has not seen are embedded (or read) once and written through to
        # the index; seen ones are not re-hashed on every query (that alone is a pass over the pool).
        todo = [e for e in entries if (e.user_id, e.entry_id) not in self._memory]
        if todo:
            self.vectors(todo)
        by_key = {(e.user_id, e.entry_id): e for e in entries}
        q = self.embedder.embed([query])[0]
        users = sorted({e.user_id for e in entries})
        found = self.store.nearest(self.embedder.name, q, k * self.ann_overfetch, users=users)
        hits = [Retrieved(by_key[(n.user_id, n.doc_id)], n.score) for n in found if (n.user_id, n.doc_id) in by_key]
        return hits[:k] if len(hits) >= min(k, len(entries)) else None

    def forget(self, user_id: str) -> None:
        """Drop ``user_id``'s vectors from memory (the store's rows go with ``Store.delete_user``)."""
        for key in [key for key in self._memory if key[0] == user_id]:
            self._memory.pop(key, None)
