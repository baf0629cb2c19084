"""Trained adapters addressed by registry key (method, scope, owner, task, variant).

Adapters are files (PEFT folders or other weights) plus a store :class:`~tailorlm.data.Artifact`
row, so ``Store.delete_user`` removes a user's adapters together with the rest of their
data, and a serving backend (the local generator, or vLLM with ``--enable-lora``) can load
them by name. :class:`AdapterCache` keeps a bounded number of them loaded in one generator.
"""

from tailorlm.adapters.cache import AdapterCache
from tailorlm.adapters.registry import AdapterKey, AdapterRecord, AdapterRegistry

__all__ = ["AdapterCache", "AdapterKey", "AdapterRecord", "AdapterRegistry"]
