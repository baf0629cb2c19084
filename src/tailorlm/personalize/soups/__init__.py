"""Personalized Soups: per-dimension preference adapters merged per user at inference ("soups").

Its adapters are DPO adapters, one per preference dimension (``tailorlm train --method dpo
-O dimension=...``), so it registers no trainer of its own.
"""

from tailorlm.personalize.registry import register_method
from tailorlm.personalize.soups.config import SoupsConfig
from tailorlm.personalize.soups.method import SoupsPersonalizer
from tailorlm.personalize.soups.weights import user_weights

__all__ = ["SoupsConfig", "SoupsPersonalizer", "user_weights"]

register_method(name="soups", config_cls=SoupsConfig, method_cls=SoupsPersonalizer)
