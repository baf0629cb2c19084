"""Derived per-user artifacts, always stored with provenance (which model, which version, when).

Embeddings have their own API on the store because they are matrices and must
never be mixed across models; everything else derived (profile summaries, persona
assignments and descriptions, adapter records, memory facts) is an
:class:`Artifact` or a :class:`Fact`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Artifact", "Fact", "Scope"]

Scope = Literal["user", "persona", "global"]


def _now() -> int:
    return int(time.time())


class Artifact(BaseModel):
    """Something a model or method derived, at user, persona or global scope.

    ``owner`` is the user id (scope 'user'), the persona id (scope 'persona') or
    '' (scope 'global'). ``path`` points at files (e.g. an adapter folder) that
    ``Store.delete_user`` removes together with the row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope = "user"
    owner: str = ""
    kind: str = Field(..., description="'profile', 'persona', 'adapter', ...")
    key: str = Field("default", description="distinguishes artifacts of one kind, e.g. the task")
    payload: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    model: str | None = None
    model_version: str | None = None
    created_at: int = Field(default_factory=_now)

    @model_validator(mode="after")
    def _check_owner(self) -> Artifact:
        if self.scope == "global" and self.owner:
            raise ValueError("owner must be '' for scope 'global'")
        if self.scope != "global" and not self.owner:
            raise ValueError(f"owner is required for scope {self.scope!r}")
        if not self.kind.strip():
            raise ValueError("kind must be non-empty")
        return self


class Fact(BaseModel):
    """A fact about the user (memory), valid from ``valid_from`` until ``valid_to``.

    Contradicted facts are closed (``valid_to`` set) rather than overwritten so the
    history stays auditable; forgetting deletes the row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str
    fact_id: str
    text: str
    valid_from: int = Field(default_factory=_now)
    valid_to: int | None = None
    source: str | None = None
    model: str | None = None
    model_version: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be non-empty")
        return v

    @property
    def is_valid(self) -> bool:
        return self.valid_to is None
