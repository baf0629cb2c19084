"""Persona-level personalization: groups of similar users by attribute or by clustering."""

from tailorlm.personalize.base import register_method
from tailorlm.personalize.persona.config import PersonaConfig
from tailorlm.personalize.persona.method import PersonaPersonalizer

__all__ = ["PersonaConfig", "PersonaPersonalizer"]

register_method(name="persona", config_cls=PersonaConfig, method_cls=PersonaPersonalizer)
