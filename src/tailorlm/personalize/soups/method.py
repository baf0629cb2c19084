"""Personalized Soups (Jang et al. 2023): one preference policy per dimension, mixed per user.

Each dimension ("concise", "detailed", ...) has a global DPO adapter trained on that
dimension's pairs (``dpo/train.py`` with ``dimension=...``, registry variant = the
dimension). At inference the user's weights (:func:`user_weights`) mix them into one
adapter with PEFT's ``add_weighted_adapter``; the merged adapter is named from the
source adapters and the exact weights, so one mix is built once and reused, a retrained
dimension adapter yields a new name, and the name says the mix
(``soups-concise70-detailed30-<hash>``). Merged adapters are kept in an LRU of
``cache_capacity``; the dimension adapters themselves stay loaded while the method lives.

The weights used are reported in the usage record's ``retrieved`` list as
``{"block": "soups", "id": "<dimension>:<adapter name>", "score": weight}`` (and in
:attr:`weights_`), since the adapter alone does not say which mix a user got.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tailorlm.adapters.cache import AdapterCache
from tailorlm.adapters.registry import AdapterKey, AdapterRecord, AdapterRegistry
from tailorlm.errors import NoAdapterError
from tailorlm.personalize.base import BasePersonalizer
from tailorlm.personalize.soups.config import SoupsConfig
from tailorlm.personalize.soups.weights import user_weights
from tailorlm.personalize.types import Contribution, PersonalizedInput, Query

__all__ = ["SoupsPersonalizer", "merged_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def merged_name(sources: list[AdapterRecord], weights: dict[str, float], combination: str) -> str:
    """Adapter name of one mix: readable weights (percent) plus a hash of the exact inputs."""
    exact = json.dumps([[r.name for r in sources], weights, combination], sort_keys=True)
    digest = hashlib.sha256(exact.encode()).hexdigest()[:10]
    parts = [f"{_UNSAFE.sub('_', d)[:16]}{round(100 * w)}" for d, w in weights.items()]
    return f"soups-{'-'.join(parts)}-{digest}"


class SoupsPersonalizer(BasePersonalizer[SoupsConfig]):
    """Contributes ``adapter=<merged name>`` built from the dimension adapters and the user's weights."""

    name = "soups"
    config_cls = SoupsConfig
    per_user_state = ("weights_",)

    def __init__(
        self,
        config: SoupsConfig | None = None,
        *,
        generator: Any = None,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        super().__init__(config, token_counter=token_counter, budget_tokens=budget_tokens)
        self.generator = generator
        self._sources: AdapterCache | None = None
        self._merged: OrderedDict[str, None] = OrderedDict()
        self.merges = 0  # mixes built (cache misses); read by tests and benchmarks

    def _fit(self, store: Any, users: list[str]) -> None:
        from tailorlm.models.base import model_fingerprint

        if self.generator is None:
            raise ValueError("the soups method needs a generator (the base model its adapters were trained on)")
        self.registry_ = AdapterRegistry(store, base_model=model_fingerprint(self.generator))
        if self._sources is None:
            self._sources = AdapterCache(self.generator, self.registry_, capacity=max(64, len(self.config.dimensions)))

    def dimension_adapters(self, task: str) -> tuple[list[AdapterRecord], list[str]]:
        """The registered adapter of each dimension, and the dimensions that have none."""
        found, missing = [], []
        for dim in self.config.dimensions:
            rec = self.registry_.get(AdapterKey(self.config.adapter_method, "global", "", task, dim))
            (found.append(rec) if rec is not None else missing.append(dim))
        return found, missing

    def _merge(self, sources: list[AdapterRecord], weights: dict[str, float]) -> str:
        name = merged_name(sources, weights, self.config.combination)
        if name in self._merged and name in self.generator.adapters:
            self._merged.move_to_end(name)
            return name
        assert self._sources is not None
        names = [self._sources.ensure(r) for r in sources]
        # Under the generator's lock; False when another request merged the same soup first.
        if self.generator.add_weighted_adapter(
            name, names, [weights[d] for d in self.config.dimensions], combination=self.config.combination
        ):
            self.merges += 1
        self._merged[name] = None
        while len(self._merged) > self.config.cache_capacity:
            old, _ = self._merged.popitem(last=False)
            if old in self.generator.adapters:
                self.generator.delete_adapter(old)
        return name

    def weights_for(self, user_id: str, query: Query) -> tuple[dict[str, float], str]:
        """The user's weights at the query's time and where they came from (see weights.py)."""
        store = self._check_fitted()
        return user_weights(
            store, user_id, self.config.dimensions, before=query.timestamp, attribute=self.config.weights_attribute
        )

    def contribute(self, user_id: str, query: Query) -> Contribution:
        self._check_fitted()
        task = self.config.task or query.task
        sources, missing = self.dimension_adapters(task)
        if missing:
            if self.config.if_missing == "skip":
                return Contribution(method=self.name)
            raise NoAdapterError(
                f"soups needs a global {self.config.adapter_method} adapter per dimension for task {task!r}; "
                f"missing: {missing}; create each with: tailorlm train --method {self.config.adapter_method} "
                f"--scope global --task {task} (job config dimension=<name>)"
            )
        weights, source = self.weights_for(user_id, query)
        name = self._merge(sources, weights)
        self.weights_[user_id] = {"weights": weights, "source": source, "adapter": name}
        return Contribution(method=self.name, adapter=name, scope="global" if source == "uniform" else "user")

    def personalize(self, user_id: str, query: Query) -> PersonalizedInput:
        out = super().personalize(user_id, query)
        used = self.weights_.get(user_id)
        if used is not None and out.adapter == used["adapter"]:
            sources, _ = self.dimension_adapters(self.config.task or query.task)
            out.record.retrieved += [
                {"block": "soups", "id": f"{r.key.variant}:{r.name}", "score": used["weights"][r.key.variant]}
                for r in sources
            ]
        return out

    def forget(self, user_id: str) -> None:
        """Drop the user's weights; merged mixes are not personal data beyond their weights, and
        are shared by every user with the same mix, so they stay until the LRU evicts them."""
        super().forget(user_id)
