"""Per-user / persona / global LoRA adapters as a personalization method ("lora").

Aliases ``lora-user``, ``lora-persona`` and ``lora-global`` fix the scope, so specs
such as ``lora-global+rag-bm25`` compose an adapter with retrieved context. The
trainer (``train.py``) runs offline: ``tailorlm train --method lora``.
"""

from tailorlm.personalize.lora.config import LoraMethodConfig, LoraTrainConfig
from tailorlm.personalize.lora.method import LoraPersonalizer
from tailorlm.personalize.registry import register_method

__all__ = ["LoraMethodConfig", "LoraPersonalizer", "LoraTrainConfig"]

register_method(
    name="lora",
    config_cls=LoraMethodConfig,
    method_cls=LoraPersonalizer,
    trainer="tailorlm.personalize.lora.train:train_lora",
    aliases={f"lora-{scope}": {"scope": scope} for scope in ("user", "persona", "global")},
)
