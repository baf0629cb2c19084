"""Composition: several personalizers feeding one prompt (e.g. profile + RAG + an adapter).

A pipeline is itself a Personalizer, so evaluation and serving never special-case
combinations. Method specs such as ``"rag-bm25+profile"`` are parsed here, against the
registry (``registry.py``): a spec part is an alias or a registered name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

from tailorlm.errors import ConfigError
from tailorlm.personalize.base import BasePersonalizer
from tailorlm.personalize.registry import REGISTRY, resolve_alias
from tailorlm.personalize.render import render
from tailorlm.personalize.types import Contribution, PersonalizedInput, Query

__all__ = ["Pipeline", "build_method", "parse_method_spec"]


def build_method(name: str, config: Mapping[str, Any] | None = None, **collaborators: Any) -> BasePersonalizer[Any]:
    """Instantiate a registered method from its name and a config mapping."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; registered: {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    return entry.method_cls(entry.config_cls.from_dict(config or {}), **collaborators)


class Pipeline:
    """Run each step's ``contribute`` and render them together under one token budget."""

    def __init__(
        self,
        steps: Sequence[BasePersonalizer[Any]],
        *,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        if not steps:
            raise ValueError("a pipeline needs at least one step")
        self.steps = list(steps)
        self.token_counter = token_counter
        self.budget_tokens = budget_tokens
        self.name = "+".join(s.name for s in self.steps)

    def fit(self, store, users: Sequence[str] | None = None) -> Self:
        for step in self.steps:
            step.fit(store, users)
        return self

    def contribute(self, user_id: str, query: Query) -> Contribution:
        raise TypeError("a Pipeline renders its steps' contributions; call personalize()")

    def personalize(self, user_id: str, query: Query) -> PersonalizedInput:
        contributions = [s.contribute(user_id, query) for s in self.steps]
        return render(contributions, query, token_counter=self.token_counter, budget_tokens=self.budget_tokens)

    def forget(self, user_id: str) -> None:
        for step in self.steps:
            step.forget(user_id)


def parse_method_spec(
    spec: str,
    *,
    collaborators: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    token_counter: Callable[[str], int] | None = None,
    budget_tokens: int = 1024,
) -> BasePersonalizer[Any] | Pipeline:
    """Build a method or a pipeline from ``"name[+name...]"`` (registry aliases or names).

    ``collaborators`` (generator, embedder) are passed to the methods whose
    constructors accept them; ``overrides`` maps a spec part to config fields.
    """
    import inspect

    steps: list[BasePersonalizer[Any]] = []
    for part in (p.strip() for p in spec.split("+")):
        name, config = resolve_alias(part)
        config = {**config, **(overrides or {}).get(part, {})}
        cls = REGISTRY[name].method_cls
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in (collaborators or {}).items() if k in accepted and v is not None}
        steps.append(build_method(name, config, token_counter=token_counter, budget_tokens=budget_tokens, **kwargs))
    return steps[0] if len(steps) == 1 else Pipeline(steps, token_counter=token_counter, budget_tokens=budget_tokens)
