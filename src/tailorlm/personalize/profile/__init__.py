"""Personalization via prompting: the user's profile (attributes, LLM-written summary) in the prompt."""

from tailorlm.personalize.profile.config import ProfileConfig
from tailorlm.personalize.profile.method import ProfilePersonalizer, describe_attributes
from tailorlm.personalize.registry import register_method

__all__ = ["ProfileConfig", "ProfilePersonalizer", "describe_attributes"]

register_method(
    name="profile",
    config_cls=ProfileConfig,
    method_cls=ProfilePersonalizer,
    aliases={"profile": {}, "attributes": {"summary": False}},
)
