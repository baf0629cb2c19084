"""Personalization via a PPlug-style user embedding served as soft prompt tokens ("softprompt").

The projector is trained offline (``train.py``): ``tailorlm train --method softprompt``.
"""

from tailorlm.personalize.registry import register_method
from tailorlm.personalize.softprompt.config import SoftPromptConfig, SoftPromptTrainConfig
from tailorlm.personalize.softprompt.method import SOFTPROMPT_METHOD, SoftPromptPersonalizer, train_hint

__all__ = ["SOFTPROMPT_METHOD", "SoftPromptConfig", "SoftPromptPersonalizer", "SoftPromptTrainConfig", "train_hint"]

register_method(
    name=SOFTPROMPT_METHOD,
    config_cls=SoftPromptConfig,
    method_cls=SoftPromptPersonalizer,
    trainer="tailorlm.personalize.softprompt.train:train_softprompt",
)
