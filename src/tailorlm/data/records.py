"""The user data model, after the survey's definitions (Zhang et al., TMLR 2025, sec. 2).

A user u owns documents D_u (text they wrote), attributes A_u, interactions I_u
with catalogue items, and pair-wise preferences (chosen vs rejected response).
Every record is a pydantic model so bad input fails at the boundary with a message
that names the field; the store and the loaders only ever see valid records.

Natural keys make loading idempotent: a document is keyed by (user_id, doc_id),
an interaction by (user_id, item_id, kind, timestamp), a preference by
(user_id, pref_id). Where a source has no id, one is derived from the content,
so the same line loaded twice maps to the same row.

Timestamps are integer Unix seconds (UTC): portable across SQLite and PostgreSQL
and cheap to compare for "strictly before the query" filters.

Derived artifacts (embeddings, profiles, personas, adapters, memory facts) are not
here: they live in the store with provenance (see ``store.Artifact``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "USER_ATTRIBUTES",
    "Document",
    "Interaction",
    "Item",
    "Preference",
    "Record",
    "TaskExample",
    "User",
    "content_id",
    "to_timestamp",
]

_ID_MAX = 256

USER_ATTRIBUTES: tuple[str, ...] = ("age", "age_band", "gender", "occupation", "location")
"""The typed attributes of :class:`User` besides ``user_id``, ``name`` and the free-form
``attributes``: the one list of them. The users table's columns (``_tables``) are built
from it and a test checks that :class:`User` declares exactly these fields; code that
needs the attribute names (profiles, prompts, the API) should read them from here
rather than spell them out again."""


def content_id(*parts: Any) -> str:
    """A short, stable id derived from content, for sources that carry none.

    Example:
        >>> content_id("review", "B001") == content_id("review", "B001")
        True
        >>> len(content_id("review", "B001"))
        16
    """
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


#: Timestamps are stored as signed 64-bit integers (SQLite INTEGER, PostgreSQL BIGINT).
TIMESTAMP_MIN, TIMESTAMP_MAX = -(2**63), 2**63 - 1


def to_timestamp(value: Any) -> int | None:
    """Accept Unix seconds (int/float/numeric str), ISO 8601 strings or datetimes.

    Values a 64-bit column cannot hold (and NaN or infinite seconds) are refused here, so
    every way in (records, the API, uploads, loaders) says so instead of failing in the
    database."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("timestamp must be a number, an ISO date or a datetime, not a bool")
    if isinstance(value, int | float):
        return _in_range(value)
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, str):
        s = value.strip()
        try:
            number = float(s) if not s.lstrip("+-").isdigit() else int(s)
        except ValueError:
            pass
        else:
            return _in_range(number)
        try:
            return _iso_seconds(s)
        except ValueError:
            raise ValueError(f"unrecognised timestamp {value!r} (want Unix seconds or ISO 8601)") from None
    raise ValueError(f"unrecognised timestamp type {type(value).__name__}")


_LEAP_SECOND = re.compile(r"(T\d\d:\d\d):60(?=[.+\-Z]|$)")


def _iso_seconds(text: str) -> int:
    """ISO 8601 / RFC 3339 text -> Unix seconds; a time without an offset is UTC.

    RFC 3339 allows a lowercase ``t``/``z`` and a leap second (``23:59:60``, read as :59),
    which ``datetime.fromisoformat`` does not; the API's spec promises RFC 3339 date-times."""
    s = _LEAP_SECOND.sub(r"\1:59", text.upper()).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(s)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _in_range(seconds: float) -> int:
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"timestamp must be a finite number of seconds, got {seconds}")
    value = int(seconds)
    if not TIMESTAMP_MIN <= value <= TIMESTAMP_MAX:
        raise ValueError(f"timestamp {value} is outside the supported range [-2**63, 2**63 - 1] (Unix seconds)")
    return value


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)

    @field_validator(
        "user_id",
        "item_id",
        "doc_id",
        "pref_id",
        "interaction_id",
        "example_id",
        check_fields=False,
    )
    @classmethod
    def _check_id(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = str(v).strip()
        if not v:
            raise ValueError("must be a non-empty string")
        if len(v) > _ID_MAX:
            raise ValueError(f"longer than {_ID_MAX} characters")
        return v

    @field_validator("timestamp", mode="before", check_fields=False)
    @classmethod
    def _check_ts(cls, v: Any) -> int | None:
        return to_timestamp(v)


class User(_Record):
    """A user with the survey's attributes A_u: common typed fields plus free key/values.

    The typed fields between ``name`` and ``attributes`` are :data:`USER_ATTRIBUTES`;
    add or rename one there too (and in the users table, with a migration).
    """

    kind: Literal["user"] = "user"
    user_id: str
    name: str | None = None
    age: int | None = Field(None, ge=0, le=150)
    age_band: str | None = None
    gender: str | None = None
    occupation: str | None = None
    location: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class Item(_Record):
    """A catalogue item users interact with or write about (a product, a movie, a comment)."""

    kind: Literal["item"] = "item"
    item_id: str
    title: str | None = None
    text: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class Document(_Record):
    """Text the user wrote (D_u): a review, post, message, title, answer..."""

    kind: Literal["document"] = "document"
    user_id: str
    doc_id: str | None = None
    doc_kind: str = "document"
    text: str
    title: str | None = None
    rating: float | None = None
    item_id: str | None = None
    timestamp: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("doc_kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("must be a non-empty string such as 'review' or 'post'")
        return v.strip().lower()

    @model_validator(mode="after")
    def _derive_id(self) -> Document:
        if self.doc_id is None:
            did = content_id(self.doc_kind, self.item_id, self.timestamp, self.title, self.text)
            object.__setattr__(self, "doc_id", did)
        return self


InteractionKind = Literal["rating", "click", "purchase", "view", "like", "skip"]


class Interaction(_Record):
    """An implicit or explicit signal I_u between the user and an item.

    Keyed by (user_id, interaction_id); the id defaults to one derived from
    (item_id, interaction, timestamp), so a user rating the same item twice at
    different times keeps both events while a reloaded line maps to its old row.
    """

    kind: Literal["interaction"] = "interaction"
    user_id: str
    item_id: str
    interaction_id: str | None = None
    interaction: InteractionKind = "rating"
    value: float | None = None
    timestamp: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _derive_id(self) -> Interaction:
        if self.interaction_id is None:
            iid = content_id(self.item_id, self.interaction, self.timestamp)
            object.__setattr__(self, "interaction_id", iid)
        return self


class Preference(_Record):
    """A pair-wise preference: for ``prompt`` this user prefers ``chosen`` over ``rejected``."""

    kind: Literal["preference"] = "preference"
    user_id: str
    pref_id: str | None = None
    prompt: str
    chosen: str
    rejected: str
    dimension: str | None = Field(None, description="e.g. 'conciseness', 'formality'")
    source: str | None = Field(None, description="where the pair came from: 'workbench', 'derived:...'")
    timestamp: int | None = None

    @model_validator(mode="after")
    def _check(self) -> Preference:
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected are identical")
        if self.pref_id is None:
            pid = content_id(self.prompt, self.chosen, self.rejected, self.dimension)
            object.__setattr__(self, "pref_id", pid)
        return self


class TaskExample(_Record):
    """One evaluation query for a user: input x, gold output, and when it was asked.

    Formats such as LaMP ship these explicitly (questions + outputs); for review
    datasets they are derived from documents by the task definitions. ``doc_id``
    names the document that *is* the gold answer so retrieval can exclude it.
    """

    kind: Literal["example"] = "example"
    task: str
    example_id: str
    user_id: str
    input: str
    target: str | None = None
    doc_id: str | None = None
    timestamp: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


Record = User | Item | Document | Interaction | Preference | TaskExample
