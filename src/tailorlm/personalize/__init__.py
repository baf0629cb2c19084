"""Personalization methods: one folder per technique, all satisfying :class:`Personalizer`.

Importing this package registers every method (identity, rag, profile, persona, softprompt, lora, dpo, soups).
"""

from tailorlm.personalize import dpo, identity, lora, persona, profile, rag, softprompt, soups  # noqa: F401
from tailorlm.personalize.base import (
    REGISTRY,
    BasePersonalizer,
    ContextBlock,
    ContextItem,
    Contribution,
    MethodConfig,
    PersonalizedInput,
    Personalizer,
    Query,
    UsageRecord,
    build_method,
    register_method,
)
from tailorlm.personalize.granularity import Granularity
from tailorlm.personalize.identity import IdentityConfig, IdentityPersonalizer
from tailorlm.personalize.persona import PersonaConfig, PersonaPersonalizer
from tailorlm.personalize.pipeline import ALIASES, Pipeline, parse_method_spec
from tailorlm.personalize.profile import ProfileConfig, ProfilePersonalizer
from tailorlm.personalize.rag import RagConfig, RagPersonalizer
from tailorlm.personalize.render import render

__all__ = [
    "ALIASES",
    "REGISTRY",
    "BasePersonalizer",
    "ContextBlock",
    "ContextItem",
    "Contribution",
    "Granularity",
    "IdentityConfig",
    "IdentityPersonalizer",
    "MethodConfig",
    "PersonaConfig",
    "PersonaPersonalizer",
    "PersonalizedInput",
    "Personalizer",
    "Pipeline",
    "ProfileConfig",
    "ProfilePersonalizer",
    "Query",
    "RagConfig",
    "RagPersonalizer",
    "UsageRecord",
    "build_method",
    "parse_method_spec",
    "register_method",
    "render",
]
