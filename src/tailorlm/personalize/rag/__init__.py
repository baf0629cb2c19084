"""Personalization via retrieval-augmented generation."""

from tailorlm.personalize.base import register_method
from tailorlm.personalize.rag.config import RETRIEVERS, RagConfig
from tailorlm.personalize.rag.method import RagPersonalizer

__all__ = ["RETRIEVERS", "RagConfig", "RagPersonalizer"]

register_method(name="rag", config_cls=RagConfig, method_cls=RagPersonalizer)
