"""Personalization via prompting: the user's profile (attributes, LLM-written summary) in the prompt."""

from tailorlm.personalize.base import register_method
from tailorlm.personalize.profile.config import ProfileConfig
from tailorlm.personalize.profile.method import ProfilePersonalizer, describe_attributes

__all__ = ["ProfileConfig", "ProfilePersonalizer", "describe_attributes"]

register_method(name="profile", config_cls=ProfileConfig, method_cls=ProfilePersonalizer)
