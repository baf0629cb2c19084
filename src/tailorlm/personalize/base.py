"""The Personalizer protocol: the survey's adaptation function phi(x, u) as code.

A personalizer turns a task input x (a :class:`~tailorlm.personalize.types.Query`) and a
user into model input (:class:`~tailorlm.personalize.types.PersonalizedInput`: chat
messages plus an optional adapter name and soft prompt) and a
:class:`~tailorlm.personalize.types.UsageRecord` saying what was used. Every method,
whatever its family, satisfies the same protocol, so evaluation and serving treat them
alike.

Methods do not render prompts themselves: they *contribute* context blocks (retrieved
history, a profile, a persona description, few-shot examples) and/or an adapter, and
:func:`~tailorlm.personalize.render.render` turns contributions into messages under a
token budget. That is what makes composition (profile + RAG + adapter) one pipeline
rather than a fork per combination (see ``pipeline.py``). The registry of methods lives
in ``registry.py``; the value types in ``types.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

from tailorlm.errors import ConfigError
from tailorlm.personalize.render import render
from tailorlm.personalize.types import Contribution, Need, PersonalizedInput, Query

if TYPE_CHECKING:
    from tailorlm.data.store import Store
    from tailorlm.retrieval.history import HistoryEntry

__all__ = [
    "BasePersonalizer",
    "MethodConfig",
    "Personalizer",
    "eligible_history",
]


def eligible_history(store: Store, user_id: str, query: Query) -> list[HistoryEntry]:
    """The user's history a query may see: the task's kind of history, strictly before the
    query's time, without the query's own target document or item, and, when the query
    brings its own profile (``metadata["profile_ids"]``, LaMP), only that profile's
    documents. The one place the leakage guards are applied for methods, predictors and
    baselines alike."""
    from tailorlm.retrieval.history import load_history
    from tailorlm.tasks.base import get_task

    task = get_task(query.task)
    item_id = query.metadata.get("item_id")
    profile = query.metadata.get("profile_ids")
    return load_history(
        store,
        user_id=user_id,
        source=task.history_source,
        doc_kind=task.history_kind,
        before=query.timestamp,
        exclude_ids=query.exclude_doc_ids,
        exclude_items=[item_id] if item_id else [],
        only_doc_ids=[str(i) for i in profile] if isinstance(profile, list | tuple) else None,
    )


@runtime_checkable
class Personalizer(Protocol):
    """phi(x, u). ``fit`` learns from the store; ``personalize`` acts for one user."""

    name: str

    def fit(self, store: Store, users: Sequence[str] | None = None) -> Self: ...

    def contribute(self, user_id: str, query: Query) -> Contribution: ...

    def personalize(self, user_id: str, query: Query) -> PersonalizedInput: ...

    def forget(self, user_id: str) -> None: ...


@dataclass
class MethodConfig:
    """Base of every method's config: serializable, validated in ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def needs(self) -> set[Need]:
        """Collaborators the method needs with these settings ("generator", "embedder"), so
        callers build only those (loading an embedder costs ~10 s, a model more)."""
        return set()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)


C = TypeVar("C", bound=MethodConfig)


class BasePersonalizer(Generic[C]):
    """Shared behaviour: config handling, fit bookkeeping, rendering, generic forget.

    Subclasses name their config type (``class RagPersonalizer(BasePersonalizer[RagConfig])``)
    so ``self.config`` is typed, set ``name`` and ``config_cls``, implement ``_fit`` and
    ``contribute``, and list their per-user dicts in ``per_user_state`` so
    :meth:`forget` can drop a user without method-specific code.
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    per_user_state: ClassVar[tuple[str, ...]] = ()
    config: C

    def __init__(
        self,
        config: C | None = None,
        *,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        if budget_tokens < 64:
            raise ValueError(f"budget_tokens must be >= 64, got {budget_tokens}")
        if config is None:
            config = self.config_cls()  # type: ignore[assignment]  # config_cls is C's class
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} needs a {self.config_cls.__name__}, got {type(config).__name__}")
        self.config = config
        self.token_counter = token_counter
        self.budget_tokens = budget_tokens

    # -- learning -------------------------------------------------------------------

    def fit(self, store: Store, users: Sequence[str] | None = None) -> Self:
        """Learn what the method needs. ``users`` is the population (default: all users).

        Only the population's data may be pooled into persona or global context;
        a user outside it is still served, from their own data only.
        """
        self.store_ = store
        self.population_ = list(users) if users is not None else store.list_users()
        for attr in self.per_user_state:
            setattr(self, attr, {})
        self._fit(store, self.population_)
        return self

    def _fit(self, store: Store, users: list[str]) -> None:
        """Method-specific learning; the default learns nothing."""

    def _check_fitted(self) -> Store:
        store = getattr(self, "store_", None)
        if store is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(store) first")
        return store

    # -- acting -----------------------------------------------------------------------

    def contribute(self, user_id: str, query: Query) -> Contribution:
        raise NotImplementedError

    def personalize(self, user_id: str, query: Query) -> PersonalizedInput:
        return render(
            [self.contribute(user_id, query)],
            query,
            token_counter=self.token_counter,
            budget_tokens=self.budget_tokens,
        )

    def forget(self, user_id: str) -> None:
        """Drop everything this method holds in memory about ``user_id``."""
        for attr in self.per_user_state:
            getattr(self, attr, {}).pop(user_id, None)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, "config": self.config.to_dict()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
