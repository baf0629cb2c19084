"""Persona-level personalization: groups of similar users by attribute or by clustering."""

from tailorlm.personalize.persona.config import PersonaConfig
from tailorlm.personalize.persona.method import PersonaPersonalizer
from tailorlm.personalize.registry import register_method

__all__ = ["PersonaConfig", "PersonaPersonalizer"]

register_method(name="persona", config_cls=PersonaConfig, method_cls=PersonaPersonalizer, aliases={"persona": {}})
