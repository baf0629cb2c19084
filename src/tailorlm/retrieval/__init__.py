"""Ranking a single user's own data for a query (per-user, so cost does not grow with user count)."""

from tailorlm.retrieval.bm25 import BM25Retriever, Retrieved

__all__ = ["BM25Retriever", "Retrieved"]
