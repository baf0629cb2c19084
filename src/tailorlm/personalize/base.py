"""The Personalizer protocol: the survey's adaptation function phi(x, u) as code.

A personalizer turns a task input x (a :class:`Query`) and a user into model input
(:class:`PersonalizedInput`: chat messages plus an optional adapter name) and a
:class:`UsageRecord` saying what was used (retrieved ids and scores, the scope
served, the persona, prompt tokens). Every method, whatever its family, satisfies
the same protocol, so evaluation and serving treat them alike.

Methods do not render prompts themselves: they *contribute* context blocks
(retrieved history, a profile, a persona description, few-shot examples) and/or
an adapter, and :func:`render` turns contributions into messages under a token
budget. That is what makes composition (profile + RAG + adapter) one pipeline
rather than a fork per combination (see ``pipeline.py``).

Registry: each method folder calls :func:`register_method` once; the contract
tests iterate :data:`REGISTRY`, so a new method is tested without editing a list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from tailorlm.data import Store, TaskExample
    from tailorlm.retrieval import HistoryEntry

__all__ = [
    "REGISTRY",
    "BasePersonalizer",
    "ContextBlock",
    "ContextItem",
    "Contribution",
    "MethodConfig",
    "PersonalizedInput",
    "Personalizer",
    "Query",
    "ServedScope",
    "UsageRecord",
    "build_method",
    "eligible_history",
    "register_method",
]

ServedScope = Literal["user", "persona", "global", "none"]


@dataclass(frozen=True)
class Query:
    """Task input x for a user at a point in time.

    ``timestamp`` is "now" for the query: only the user's data strictly before it
    is eligible (None: everything). ``exclude_doc_ids`` names documents that are
    the query's own answer (evaluation) and must never be retrieved.
    """

    text: str
    task: str = "chat"
    timestamp: int | None = None
    exclude_doc_ids: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_example(cls, example: TaskExample, *, choices: Sequence[str] = ()) -> Query:
        return cls(
            text=example.input,
            task=example.task,
            timestamp=example.timestamp,
            exclude_doc_ids=(example.doc_id,) if example.doc_id else (),
            choices=tuple(choices),
            metadata=dict(example.metadata),
        )


def eligible_history(store: Store, user_id: str, query: Query) -> list[HistoryEntry]:
    """The user's history a query may see: the task's kind of history, strictly before the
    query's time, without the query's own target document or item. The one place the
    leakage guards are applied for methods, predictors and baselines alike."""
    from tailorlm.retrieval import load_history
    from tailorlm.tasks import get_task

    task = get_task(query.task)
    item_id = query.metadata.get("item_id")
    return load_history(
        store,
        user_id=user_id,
        source=task.history_source,
        doc_kind=task.history_kind,
        before=query.timestamp,
        exclude_ids=query.exclude_doc_ids,
        exclude_items=[item_id] if item_id else [],
    )


@dataclass(frozen=True)
class ContextItem:
    """One line of context and where it came from (kept for the usage record)."""

    text: str
    source_id: str | None = None
    score: float | None = None
    label: str | None = None  # e.g. the rating or title attached to a retrieved review


@dataclass(frozen=True)
class ContextBlock:
    """A titled group of context lines; items are ordered most relevant first."""

    kind: str  # "history", "profile", "persona", "attributes", "examples", "facts"
    heading: str
    items: tuple[ContextItem, ...]
    priority: int = 0  # under a token budget, higher-priority blocks keep their items first


@dataclass
class Contribution:
    """What one method adds to the model input for one (user, query)."""

    method: str
    blocks: list[ContextBlock] = field(default_factory=list)
    adapter: str | None = None
    scope: ServedScope = "none"
    persona_id: str | None = None
    # Input embeddings (n_tokens x hidden size) prepended to the prompt (PPlug-style user
    # embedding); only the local generator consumes them. ``soft_prompt_info`` says what
    # built them (projector name, history items) for the usage record.
    soft_prompt: Any | None = None
    soft_prompt_info: dict[str, Any] | None = None


@dataclass
class UsageRecord:
    """What personalization was actually used for one call (returned to callers and logged)."""

    methods: list[str]
    scope: ServedScope
    persona_id: str | None = None
    adapter: str | None = None
    retrieved: list[dict[str, Any]] = field(default_factory=list)  # {block, id, score}
    prompt_tokens: int = 0
    dropped_items: int = 0  # context lines cut by the token budget
    soft_prompt: dict[str, Any] | None = None  # e.g. {method, projector, history_items, n_tokens}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PersonalizedInput:
    messages: list[dict[str, str]]
    adapter: str | None
    record: UsageRecord
    blocks: list[ContextBlock] = field(default_factory=list)  # after budget truncation
    soft_prompt: Any | None = None  # (n_tokens, hidden) embeddings for generate(soft_prompt=[...])


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)


class BasePersonalizer:
    """Shared behaviour: config handling, fit bookkeeping, rendering, generic forget.

    Subclasses set ``name`` and ``config_cls``, implement ``_fit`` and
    ``contribute``, and list their per-user dicts in ``per_user_state`` so
    :meth:`forget` can drop a user without method-specific code.
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    per_user_state: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        config: MethodConfig | None = None,
        *,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        if budget_tokens < 64:
            raise ValueError(f"budget_tokens must be >= 64, got {budget_tokens}")
        if config is None:
            config = self.config_cls()
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
        from tailorlm.personalize.render import render

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


@dataclass(frozen=True)
class _Entry:
    name: str
    config_cls: type[MethodConfig]
    method_cls: type[BasePersonalizer]


REGISTRY: dict[str, _Entry] = {}


def register_method(*, name: str, config_cls: type[MethodConfig], method_cls: type[BasePersonalizer]) -> None:
    """Make a method available by name (to ``build_method``, the CLI and the contract tests)."""
    if name != name.lower() or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"method name {name!r} must be lowercase letters, digits, '-' or '_'")
    if name in REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    REGISTRY[name] = _Entry(name, config_cls, method_cls)


def build_method(name: str, config: Mapping[str, Any] | None = None, **collaborators: Any) -> BasePersonalizer:
    """Instantiate a registered method from its name and a config mapping."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    return entry.method_cls(entry.config_cls.from_dict(config or {}), **collaborators)
