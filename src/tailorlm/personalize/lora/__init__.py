"""Per-user / persona / global LoRA adapters as a personalization method ("lora").

Aliases ``lora-user``, ``lora-persona`` and ``lora-global`` fix the scope, so specs
such as ``lora-global+rag-bm25`` compose an adapter with retrieved context.
"""

from tailorlm.personalize.base import register_method
from tailorlm.personalize.lora.config import LoraMethodConfig
from tailorlm.personalize.lora.method import LoraPersonalizer, NoAdapterError
from tailorlm.personalize.pipeline import ALIASES

__all__ = ["LoraMethodConfig", "LoraPersonalizer", "NoAdapterError"]

register_method(name="lora", config_cls=LoraMethodConfig, method_cls=LoraPersonalizer)
for _scope in ("user", "persona", "global"):
    ALIASES.setdefault(f"lora-{_scope}", ("lora", {"scope": _scope}))
