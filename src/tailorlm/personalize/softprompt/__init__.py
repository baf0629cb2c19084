"""Personalization via a PPlug-style user embedding served as soft prompt tokens."""

from tailorlm.personalize.base import register_method
from tailorlm.personalize.softprompt.config import SoftPromptConfig
from tailorlm.personalize.softprompt.method import SOFTPROMPT_METHOD, SoftPromptPersonalizer, train_hint

__all__ = ["SOFTPROMPT_METHOD", "SoftPromptConfig", "SoftPromptPersonalizer", "train_hint"]

register_method(name="softprompt", config_cls=SoftPromptConfig, method_cls=SoftPromptPersonalizer)
