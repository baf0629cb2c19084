"""Sparse retrieval (BM25 via ``bm25s``) over one user's documents.

Only the requesting user's rows are read (``Store.get_documents(user_id=...)``),
so nothing of another user can be ranked into the result. By default only
documents strictly older than ``before`` are eligible and ``exclude_ids`` removes
the query's own target, the two leakage guards every evaluation needs.

Dense, hybrid and recency rankers join this package with the Personalizer work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tailorlm.data import Document, Store

__all__ = ["BM25Retriever", "Retrieved"]


@dataclass(frozen=True)
class Retrieved:
    """One retrieved document and its score under the ranker that found it."""

    document: Document
    score: float


def _doc_text(doc: Document) -> str:
    return f"{doc.title}. {doc.text}" if doc.title else doc.text


class BM25Retriever:
    """Top-k of a user's documents by BM25 against the query text.

    Args:
        k1, b: BM25 parameters (bm25s defaults).
        stopwords: stop-word list name for ``bm25s.tokenize`` ("en") or None.

    Example:
        >>> store = Store("sqlite://")
        >>> _ = store.add([Document(user_id="u", text="guitar strings sound bright"),
        ...                Document(user_id="u", text="a sturdy keyboard stand")])
        >>> [r.document.text for r in BM25Retriever().search(store, user_id="u", query="strings", k=1)]
        ['guitar strings sound bright']
    """

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en") -> None:
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords

    def search(
        self,
        store: Store,
        *,
        user_id: str,
        query: str,
        k: int = 4,
        before: int | None = None,
        exclude_ids: Sequence[str] = (),
        doc_kind: str | None = None,
    ) -> list[Retrieved]:
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        docs = store.get_documents(user_id=user_id, before=before, exclude_ids=exclude_ids, doc_kind=doc_kind)
        return self.rank(docs, query=query, k=k)

    def rank(self, docs: Sequence[Document], *, query: str, k: int) -> list[Retrieved]:
        """Rank an already-fetched candidate list (the caller guarantees it is one user's)."""
        if not docs:
            return []
        import bm25s

        corpus = bm25s.tokenize([_doc_text(d) for d in docs], stopwords=self.stopwords, show_progress=False)
        index = bm25s.BM25(k1=self.k1, b=self.b)
        index.index(corpus, show_progress=False)
        q = bm25s.tokenize([query], stopwords=self.stopwords, show_progress=False)
        if not q.vocab:  # the query has no indexable token (e.g. only stop words)
            return []
        ids, scores = index.retrieve(q, k=min(k, len(docs)), show_progress=False, n_threads=1)
        hits = [Retrieved(docs[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True)]
        return [h for h in hits if h.score > 0]
