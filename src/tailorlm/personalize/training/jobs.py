"""Training jobs: one seam between "what to train" and "how".

A :class:`TrainJob` names an adapter to produce (method, scope, owner, task and
method-specific options); the method's trainer (named in its ``register_method`` call,
found with :func:`~tailorlm.personalize.registry.get_trainer`) turns it into an
:class:`~tailorlm.adapters.AdapterRecord` using a :class:`TrainContext` (store, registry,
the base generator). Jobs are plain data so a queue can persist them and a scale-out
runner (Ray, one task per user) can ship them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tailorlm.adapters.registry import AdapterKey, AdapterRegistry
    from tailorlm.data.store import Store
    from tailorlm.models.local import TransformersGenerator

__all__ = ["SCOPES", "TrainContext", "TrainJob", "config_from_mapping"]

SCOPES = ("user", "persona", "global")


@dataclass(frozen=True)
class TrainJob:
    """One adapter to train. ``owner``: user id (scope user), persona id (persona), '' (global)."""

    method: str
    scope: str
    owner: str
    task: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method.strip():
            raise ValueError(f"TrainJob.method must be a non-empty string, got {self.method!r}")
        if not isinstance(self.task, str) or not self.task.strip():
            raise ValueError(f"TrainJob.task must be a non-empty string, got {self.task!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"TrainJob.scope must be one of {SCOPES}, got {self.scope!r}")
        if self.scope == "global" and self.owner:
            raise ValueError(f"TrainJob.owner must be '' for scope 'global', got {self.owner!r}")
        if self.scope != "global" and not self.owner:
            raise ValueError(f"TrainJob.owner is required for scope {self.scope!r} (a user or persona id)")
        if not isinstance(self.config, Mapping):
            raise ValueError(f"TrainJob.config must be a mapping, got {type(self.config).__name__}")

    def key(self, variant: str = "default") -> AdapterKey:
        """The registry key this job writes (trainers pick the variant, e.g. 'init=global')."""
        from tailorlm.adapters.registry import AdapterKey

        return AdapterKey(method=self.method, scope=self.scope, owner=self.owner, task=self.task, variant=variant)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scope": self.scope,
            "owner": self.owner,
            "task": self.task,
            "config": dict(self.config),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainJob:
        return cls(
            method=data["method"],
            scope=data["scope"],
            owner=data.get("owner", ""),
            task=data["task"],
            config=dict(data.get("config") or {}),
        )


@dataclass
class TrainContext:
    """What a trainer may use. ``generator`` must come back usable and unchanged.

    ``users`` is the population persona and global jobs learn from (None: every user in
    the store); ``exclude`` names users no job may learn from even when they are in it
    (a retrain's deleted users who were loaded again). Trainers read both through
    :meth:`population`, and the training manifest refuses a row of an excluded user.
    ``rebuild`` is set by ``retrain-stale`` (the artifact rebuilt, how many deleted users
    it leaves out) and goes into the new training manifest.
    """

    store: Store
    registry: AdapterRegistry
    generator: TransformersGenerator
    embedder: Any | None = None
    users: Sequence[str] | None = None
    progress: Callable[[int, int, float], None] | None = None
    exclude: frozenset[str] = frozenset()
    rebuild: Mapping[str, Any] | None = None

    def population(self) -> list[str]:
        """``users`` (or every stored user) without the excluded ones, in their given order."""
        users = list(self.users) if self.users is not None else self.store.list_users()
        return [u for u in users if u not in self.exclude]


def config_from_mapping(cls: type, data: Mapping[str, Any], *, tuples: Sequence[str] = ()) -> Any:
    """A trainer's config dataclass from a job's options (CLI ``-O``, suite TOML, JSON).

    Unknown options are an error that lists the known ones; the fields in ``tuples``
    accept a comma-separated string or any sequence (TOML and JSON have no tuples).
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(data) - names:
        raise ValueError(f"{cls.__name__}: unknown option(s) {sorted(unknown)}; known: {sorted(names)}")
    values = dict(data)
    for name in tuples:
        if isinstance(values.get(name), str):
            values[name] = tuple(values[name].split(","))
        elif values.get(name) is not None:
            values[name] = tuple(values[name])
    return cls(**values)
