"""Parametric personalization: serve the best registered LoRA adapter for the user.

The adapter *is* the personalization (no context blocks): a user adapter when the
user has one and enough history, else their persona's, else the global task adapter
(the cold-start rule of ``granularity.py``). Adapters are trained offline
(``tailorlm train``), never here; this method only finds and loads them, through an
LRU :class:`~tailorlm.adapters.AdapterCache` bound to the generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tailorlm.adapters.cache import AdapterCache
from tailorlm.adapters.registry import AdapterKey, AdapterRecord, AdapterRegistry
from tailorlm.errors import NoAdapterError
from tailorlm.personalize.base import BasePersonalizer, eligible_history
from tailorlm.personalize.lora.config import LoraMethodConfig, with_history
from tailorlm.personalize.types import Contribution, Query, ServedScope

__all__ = ["LoraPersonalizer"]


class LoraPersonalizer(BasePersonalizer[LoraMethodConfig]):
    """Contributes ``adapter=<name>`` and reports the scope it was served at."""

    name = "lora"
    config_cls = LoraMethodConfig

    def __init__(
        self,
        config: LoraMethodConfig | None = None,
        *,
        generator: Any = None,
        embedder: Any = None,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        super().__init__(config, token_counter=token_counter, budget_tokens=budget_tokens)
        self.generator = generator
        self.embedder = embedder
        self._cache: AdapterCache | None = None

    def _fit(self, store: Any, users: list[str]) -> None:
        from tailorlm.models.base import model_fingerprint
        from tailorlm.personalize.granularity import Granularity

        if self.generator is None:
            raise ValueError("the lora method needs a generator (the base model its adapters were trained on)")
        self.registry_ = AdapterRegistry(store, base_model=model_fingerprint(self.generator))
        persona_by = self.config.persona_by or self._infer_persona_by()
        self.granularity_ = None
        if persona_by is not None and (persona_by != "cluster" or self.embedder is not None):
            self.granularity_ = Granularity(persona_by=persona_by, embedder=self.embedder).fit(store, users)
        if self._cache is None:
            self._cache = AdapterCache(self.generator, self.registry_, capacity=self.config.cache_capacity)

    def _infer_persona_by(self) -> str | None:
        attrs = {
            r.key.owner.partition("=")[0]
            for r in self.registry_.list(method=self.config.adapter_method, scope="persona", task=self.config.task)
        }
        return attrs.pop() if len(attrs) == 1 else None

    def _find(self, user_id: str, query: Query) -> tuple[AdapterRecord | None, ServedScope, str | None]:
        task, method = self.config.task or query.task, self.config.adapter_method
        scope = self.config.scope
        persona = self.granularity_.persona_of(user_id, before=query.timestamp) if self.granularity_ else None
        order: list[ServedScope]
        if scope == "auto":
            enough = len(eligible_history(self.store_, user_id, query)) >= self.config.min_user_items
            order = ["user", "persona", "global"] if enough else ["persona", "global"]
        elif scope == "persona":
            # The granularity rule: a user with no persona yet (no history) is served at global scope.
            order = ["persona", "global"]
        else:
            order = [scope]
        hist, k = self.config.history, self.config.history_k
        pooled = with_history("default", hist, k)  # persona and global adapters
        for s in order:
            if s == "user":
                variant = with_history(self.config.variant, hist, k)
                rec = self.registry_.get(AdapterKey(method, "user", user_id, task, variant))
            elif s == "persona":
                rec = self.registry_.get(AdapterKey(method, "persona", persona, task, pooled)) if persona else None
            else:
                rec = self.registry_.get(AdapterKey(method, "global", "", task, pooled))
            if rec is not None:
                return rec, s, persona
        return None, "none", persona

    def contribute(self, user_id: str, query: Query) -> Contribution:
        self._check_fitted()
        rec, scope, persona = self._find(user_id, query)
        if rec is None:
            if self.config.if_missing == "skip":
                return Contribution(method=self.name, persona_id=persona)
            task = self.config.task or query.task
            want = "global" if self.config.scope == "auto" else self.config.scope
            who = {"user": f" --user {user_id}", "persona": f" --persona {persona or '<attr=value>'}"}.get(want, "")
            if self.config.history is not None:
                who += f" -O history={self.config.history}"
                who += f" -O history_k={self.config.history_k}" if self.config.history_k is not None else ""
            raise NoAdapterError(
                f"no {self.config.adapter_method} adapter for user {user_id!r} on task {task!r} "
                f"(scope {self.config.scope}, base model {self.registry_.base_model!r}); create one with: "
                f"tailorlm train --method {self.config.adapter_method} --scope {want}{who} --task {task}"
            )
        assert self._cache is not None
        name = self._cache.ensure(rec)
        return Contribution(method=self.name, adapter=name, scope=scope, persona_id=persona)

    def forget(self, user_id: str) -> None:
        """Unload the user's own adapters from the generator (pooled ones stay)."""
        if self._cache is not None:
            self._cache.discard(lambda r: r.key.scope == "user" and r.key.owner == user_id)
