"""Personalization methods: one folder per technique, all satisfying :class:`Personalizer`.

Each folder (identity, rag, profile, persona, lora, dpo, softprompt, soups) holds its
config, method and, where it trains, its trainer, and registers itself with one
:func:`register_method` call when imported; importing this package imports them all.
:func:`generate` is the one call that personalizes an input and runs the model.
"""

# Registration order is the order /v1/models and `tailorlm methods` list the aliases in.
from tailorlm.personalize import identity, rag, profile, persona, lora, dpo, softprompt, soups  # noqa: F401, I001
from tailorlm.personalize.apply import Generated, for_conversation, generate, personalize_input
from tailorlm.personalize.base import BasePersonalizer, MethodConfig, Personalizer, eligible_history
from tailorlm.personalize.granularity import Granularity
from tailorlm.personalize.identity import IdentityConfig, IdentityPersonalizer
from tailorlm.personalize.persona import PersonaConfig, PersonaPersonalizer
from tailorlm.personalize.pipeline import Pipeline, build_method, parse_method_spec
from tailorlm.personalize.profile import ProfileConfig, ProfilePersonalizer
from tailorlm.personalize.rag import RagConfig, RagPersonalizer
from tailorlm.personalize.registry import (
    ALIASES,
    FEATURED_PIPELINES,
    REGISTRY,
    get_trainer,
    method_names,
    needs_of,
    register_method,
    register_trainer,
    trainable_methods,
)
from tailorlm.personalize.render import render
from tailorlm.personalize.types import (
    ContextBlock,
    ContextItem,
    Contribution,
    PersonalizedInput,
    Query,
    UsageRecord,
)

__all__ = [
    "ALIASES",
    "FEATURED_PIPELINES",
    "REGISTRY",
    "BasePersonalizer",
    "ContextBlock",
    "ContextItem",
    "Contribution",
    "Generated",
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
    "eligible_history",
    "for_conversation",
    "generate",
    "get_trainer",
    "method_names",
    "needs_of",
    "parse_method_spec",
    "personalize_input",
    "register_method",
    "register_trainer",
    "render",
    "trainable_methods",
]
