"""The one registry of personalization methods: name, config, method class, trainer, aliases.

Each technique folder makes exactly one :func:`register_method` call in its
``__init__.py``; the CLI, the evaluation suites, the runner and the service read this
registry (never a list of their own), so adding a technique is one folder and one call.

Trainers are registered by reference (``"tailorlm.personalize.lora.train:train_lora"``)
and imported on first use, because training libraries (peft, trl) take ~10 s to import
and training never runs in the request path.

What this module leaves out: building pipelines from specs (``pipeline.py``) and running
training jobs (``training/queue.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tailorlm.errors import ConfigError
from tailorlm.personalize.types import Need

if TYPE_CHECKING:
    from tailorlm.adapters.registry import AdapterRecord
    from tailorlm.personalize.base import BasePersonalizer, MethodConfig
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob

__all__ = [
    "ALIASES",
    "FEATURED_PIPELINES",
    "REGISTRY",
    "RegisteredMethod",
    "Trainer",
    "get_trainer",
    "method_names",
    "needs_of",
    "register_method",
    "register_trainer",
    "resolve_alias",
    "trainable_methods",
]

Trainer = Callable[["TrainJob", "TrainContext"], "AdapterRecord"]


@dataclass(frozen=True)
class RegisteredMethod:
    """One technique as the rest of the code sees it.

    Args:
        name: registry name (lowercase), the folder's stem.
        config_cls / method_cls: the method's config dataclass and Personalizer class.
        trainer: ``"module:function"`` of its trainer, or None when it learns nothing offline.
        aliases: short specs fixing config fields, e.g. ``{"lora-user": {"scope": "user"}}``.
    """

    name: str
    config_cls: type[MethodConfig]
    method_cls: type[BasePersonalizer[Any]]
    trainer: str | None = None
    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


REGISTRY: dict[str, RegisteredMethod] = {}
#: spec -> (registered method, config fields); the registry's own names resolve to themselves.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}
#: Multi-method specs worth listing (the service's /v1/models); any valid spec works.
FEATURED_PIPELINES = ("rag-bm25+profile", "rag-bm25+attributes", "rag-dense+profile", "recency+attributes")
_TRAINERS: dict[str, Trainer] = {}


def register_method(
    *,
    name: str,
    config_cls: type[MethodConfig],
    method_cls: type[BasePersonalizer[Any]],
    trainer: str | None = None,
    aliases: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Make a technique available by name and by its aliases (see :class:`RegisteredMethod`).

    What a method needs (generator, embedder) depends on its settings (``rag`` embeds only
    with a dense retriever), so each config says it: ``MethodConfig.needs()``.

    Raises:
        ConfigError: a name that is not lowercase ``[a-z0-9_-]``, or already taken
            (by a method or an alias), or a malformed trainer reference.
    """
    aliases = dict(aliases or {})
    for spec in (name, *aliases):
        if spec != spec.lower() or not spec.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"method name {spec!r} must be lowercase letters, digits, '-' or '_'")
        if spec in REGISTRY or spec in ALIASES:
            raise ConfigError(f"method name {spec!r} is already registered")
    if trainer is not None and trainer.count(":") != 1:
        raise ConfigError(f"trainer of {name!r} must be 'module:function', got {trainer!r}")
    REGISTRY[name] = RegisteredMethod(name, config_cls, method_cls, trainer, aliases)
    for spec, config in aliases.items():
        ALIASES[spec] = (name, dict(config))


def resolve_alias(spec: str) -> tuple[str, dict[str, Any]]:
    """(registered method, config fields) for one spec part: an alias or a registry name."""
    if spec in ALIASES:
        name, config = ALIASES[spec]
        return name, dict(config)
    if spec in REGISTRY:
        return spec, {}
    raise ConfigError(f"unknown method {spec!r}; known: {method_names()}")


def method_names() -> list[str]:
    """Every spec a single method answers to: aliases first, then bare registry names."""
    aliased = {name for name, _ in ALIASES.values()}
    return [*ALIASES, *sorted(set(REGISTRY) - aliased)]


def needs_of(spec: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> set[Need]:
    """The collaborators a spec (``"a+b"``) needs with ``overrides`` (spec part -> config
    fields) applied, as each method's config declares them (``MethodConfig.needs``)."""
    needs: set[Need] = set()
    for part in (p.strip() for p in spec.split("+")):
        name, config = resolve_alias(part)
        entry = REGISTRY[name]
        needs |= entry.config_cls.from_dict({**config, **(overrides or {}).get(part, {})}).needs()
    return needs


def register_trainer(method: str, fn: Trainer) -> None:
    """Register a trainer for a job ``method`` that is not a personalization method of its
    own (an experiment, a test double); techniques name theirs in :func:`register_method`."""
    if not isinstance(method, str) or not method.strip():
        raise ConfigError(f"trainer method must be a non-empty string, got {method!r}")
    _TRAINERS[method] = fn


def get_trainer(method: str) -> Trainer:
    """The trainer for jobs of ``method``, importing its module on first use.

    Raises:
        KeyError: nothing registers a trainer for ``method``.
    """
    if method not in _TRAINERS:
        entry = REGISTRY.get(method)
        if entry is None or entry.trainer is None:
            raise KeyError(f"no trainer for method {method!r}; known: {trainable_methods()}")
        module, _, attr = entry.trainer.partition(":")
        _TRAINERS[method] = getattr(importlib.import_module(module), attr)
    return _TRAINERS[method]


def trainable_methods() -> list[str]:
    """Methods that have a trainer (registered techniques and extra trainers)."""
    return sorted({n for n, e in REGISTRY.items() if e.trainer} | set(_TRAINERS))
