"""Personalization via retrieval-augmented generation ("rag"; aliases by retriever)."""

from tailorlm.personalize.rag.config import RETRIEVERS, RagConfig
from tailorlm.personalize.rag.method import RagPersonalizer
from tailorlm.personalize.registry import register_method

__all__ = ["RETRIEVERS", "RagConfig", "RagPersonalizer"]

register_method(
    name="rag",
    config_cls=RagConfig,
    method_cls=RagPersonalizer,
    aliases={
        "rag-bm25": {"retriever": "bm25"},
        "rag-dense": {"retriever": "dense"},
        "rag-hybrid": {"retriever": "hybrid"},
        "recency": {"retriever": "recency"},
        "random": {"retriever": "random"},
    },
)
