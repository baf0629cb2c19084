"""Serve the best registered DPO adapter for the user: user -> persona -> global.

A DPO adapter is a LoRA adapter trained with a preference loss (``dpo/train.py``), so
finding and loading one is exactly the LoRA method's job with another registry
method name: this reuses :class:`~tailorlm.personalize.lora.LoraPersonalizer` (the
cold-start rule, the LRU adapter cache, the error naming the train command) with
``adapter_method="dpo"``.
"""

from __future__ import annotations

from tailorlm.personalize.dpo.config import DpoMethodConfig
from tailorlm.personalize.lora.method import LoraPersonalizer

__all__ = ["DpoPersonalizer"]


class DpoPersonalizer(LoraPersonalizer):
    """Contributes ``adapter=<name>`` of the user's, their persona's or the global DPO adapter."""

    name = "dpo"
    config_cls = DpoMethodConfig
