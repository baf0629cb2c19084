"""Parametric personalization: serve the best registered LoRA adapter for the user.

The adapter *is* the personalization (no context blocks): a user adapter when the
user has one and enough history, else their persona's, else the global task adapter
(the cold-start rule of ``granularity.py``). Adapters are trained offline
(``tailorlm train``), never here; this method only finds and loads them, through an
LRU :class:`~tailorlm.adapters.AdapterCache` bound to the generator.

A remote generator (vLLM, :class:`~tailorlm.models.base.RemoteAdapterHost`) can fail to load
an adapter that exists (its rank is above the server's limit, the server cannot read the
folder). The rule then goes on down: a user adapter that fails to load is replaced by the
persona's, then the global one, with a warning naming the failure and the usage record's
scope saying which one served; when every candidate fails, the error lists each failure.
The local backend loads in-process and keeps raising its own errors at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from tailorlm.adapters.cache import AdapterCache
from tailorlm.adapters.registry import AdapterKey, AdapterRecord, AdapterRegistry
from tailorlm.errors import BackendError, NoAdapterError
from tailorlm.personalize.base import BasePersonalizer, eligible_history
from tailorlm.personalize.lora.config import LoraMethodConfig, with_history
from tailorlm.personalize.types import Contribution, Query, ServedScope

__all__ = ["LoraPersonalizer"]

log = logging.getLogger(__name__)


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
        from tailorlm.models.base import adapter_fingerprint
        from tailorlm.personalize.granularity import Granularity

        if self.generator is None:
            raise ValueError("the lora method needs a generator (the base model its adapters were trained on)")
        # A vLLM server serving the local model's weights looks adapters up under that model.
        self.registry_ = AdapterRegistry(store, base_model=adapter_fingerprint(self.generator))
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

    def _candidates(
        self, user_id: str, query: Query, persona: str | None
    ) -> Iterator[tuple[AdapterRecord, ServedScope]]:
        """The registered adapters that may serve the user, best first (looked up lazily:
        the first that loads is the only one the registry is asked for, as a rule)."""
        task, method = self.config.task or query.task, self.config.adapter_method
        scope = self.config.scope
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
                yield rec, s

    def _load(self, rec: AdapterRecord) -> str:
        """Put ``rec`` into the generator; a remote one loads it now, so that a failure
        (BackendError) lets :meth:`contribute` fall back instead of failing the generation."""
        from tailorlm.models.base import RemoteAdapterHost

        assert self._cache is not None
        name = self._cache.ensure(rec)
        if isinstance(self.generator, RemoteAdapterHost):
            self.generator.load_adapter(name)
        return name

    def contribute(self, user_id: str, query: Query) -> Contribution:
        self._check_fitted()
        persona = self.granularity_.persona_of(user_id, before=query.timestamp) if self.granularity_ else None
        failed: list[str] = []
        for rec, scope in self._candidates(user_id, query, persona):
            try:
                name = self._load(rec)
            except BackendError as exc:
                log.warning("%s adapter %s failed to load, trying the next scope: %s", rec.key.scope, rec.name, exc)
                failed.append(f"{rec.key.scope} adapter {rec.name}: {exc}")
                continue
            return Contribution(method=self.name, adapter=name, scope=scope, persona_id=persona)
        if failed:
            raise BackendError(
                f"no {self.config.adapter_method} adapter for user {user_id!r} could be loaded "
                f"(scope {self.config.scope}; nothing left to fall back to): " + "; ".join(failed)
            )
        if self.config.if_missing == "skip":
            return Contribution(method=self.name, persona_id=persona)
        raise self._missing(user_id, query, persona)

    def _missing(self, user_id: str, query: Query, persona: str | None) -> NoAdapterError:
        """The error for a user no registered adapter can serve, naming the train command."""
        task = self.config.task or query.task
        want = "global" if self.config.scope == "auto" else self.config.scope
        who = {"user": f" --user {user_id}", "persona": f" --persona {persona or '<attr=value>'}"}.get(want, "")
        if self.config.history is not None:
            who += f" -O history={self.config.history}"
            who += f" -O history_k={self.config.history_k}" if self.config.history_k is not None else ""
        base = self.registry_.base_model
        hint = " (set generator.adapter_base to the local model they were trained on)" if "base_url=" in base else ""
        return NoAdapterError(
            f"no {self.config.adapter_method} adapter for user {user_id!r} on task {task!r} "
            f"(scope {self.config.scope}, base model {base!r}{hint}); create one with: "
            f"tailorlm train --method {self.config.adapter_method} --scope {want}{who} --task {task}"
        )

    def forget(self, user_id: str) -> None:
        """Unload the user's own adapters from the generator (pooled ones stay)."""
        if self._cache is not None:
            self._cache.discard(lambda r: r.key.scope == "user" and r.key.owner == user_id)
