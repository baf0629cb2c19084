"""Settings of the LoRA personalizer (which registered adapter serves a user)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tailorlm.personalize.base import MethodConfig

__all__ = ["LoraMethodConfig"]

_SCOPES = ("auto", "user", "persona", "global")


@dataclass
class LoraMethodConfig(MethodConfig):
    """Which adapter to serve.

    Args:
        task: the adapters' task; None: the query's task.
        scope: "auto" (user -> persona -> global by the cold-start rule) or one fixed scope;
            "persona" falls back to global for a user with no persona yet (no history).
        min_user_items: eligible own history entries needed before a user adapter is served.
        persona_by: the persona attribute (or "cluster"); None: inferred from the
            registered persona adapters' ids ("gender=F" -> "gender").
        variant: the user adapters' variant ("default", or "init=global" for OPPU-style ones).
        adapter_method: the registry method name to look up (LoRA-family trainers may reuse this).
        if_missing: "error" (raise, naming the train command) or "skip" (serve the base model).
        cache_capacity: adapters kept loaded in the generator at once (LRU, ~2 MB each). An
            evaluation personalizes a whole batch before predicting, so this must exceed the
            number of distinct adapters one prediction batch needs.
    """

    task: str | None = None
    scope: Literal["auto", "user", "persona", "global"] = "auto"
    min_user_items: int = 1
    persona_by: str | None = None
    variant: str = "default"
    adapter_method: str = "lora"
    if_missing: Literal["error", "skip"] = "error"
    cache_capacity: int = 64

    def __post_init__(self) -> None:
        if self.scope not in _SCOPES:
            raise ValueError(f"LoraMethodConfig.scope must be one of {_SCOPES}, got {self.scope!r}")
        if self.if_missing not in ("error", "skip"):
            raise ValueError(f"LoraMethodConfig.if_missing must be 'error' or 'skip', got {self.if_missing!r}")
        if self.min_user_items < 0:
            raise ValueError(f"LoraMethodConfig.min_user_items must be >= 0, got {self.min_user_items}")
        if self.cache_capacity < 1:
            raise ValueError(f"LoraMethodConfig.cache_capacity must be >= 1, got {self.cache_capacity}")
