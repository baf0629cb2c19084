"""Per-user / persona / global DPO adapters as a personalization method ("dpo").

Aliases ``dpo-user``, ``dpo-persona`` and ``dpo-global`` fix the scope.
"""

from tailorlm.personalize.base import register_method
from tailorlm.personalize.dpo.method import DpoMethodConfig, DpoPersonalizer
from tailorlm.personalize.pipeline import ALIASES

__all__ = ["DpoMethodConfig", "DpoPersonalizer"]

register_method(name="dpo", config_cls=DpoMethodConfig, method_cls=DpoPersonalizer)
for _scope in ("user", "persona", "global"):
    ALIASES.setdefault(f"dpo-{_scope}", ("dpo", {"scope": _scope}))
