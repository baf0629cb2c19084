"""Training provenance: which users' data built a derived artifact, and which artifacts are stale.

Why: ``Store.delete_user`` removes a user's rows and their own artifacts, but shared
artifacts (global and persona adapters, the soft-prompt projector, persona descriptions)
and other users' adapters started from a global one keep what they learned from that
user. So every trained artifact records a :class:`TrainingManifest` (who, how many of
their rows, the task, the options that re-run it, the artifacts it started from), and a
deletion marks each artifact that learned from the user *stale* in the same transaction,
until ``tailorlm train retrain-stale`` rebuilds it without them.

Privacy trade-off, decided here: the per-user rows (table ``artifact_users``) never hold a
user id in clear, but a *subject*: HMAC-SHA256 of the id under a random key kept in the
store (``tailorlm_meta.provenance_key``). A deleted user's stale mark therefore keeps only
that keyed hash and the deletion time, which is what a retrain needs to exclude them (the
id of a user who is loaded again hashes to the same subject). It is pseudonymous, not
anonymous: whoever holds the store and guesses an id can test it. The mark goes away when
the artifact is rebuilt; the new manifest only counts how many users were excluded.

The manifest's JSON summary (:meth:`TrainingManifest.summary`, kept in the artifact's
``payload["manifest"]``) has counts and options but no user ids. An artifact without one
was written before provenance existed: its provenance is *unknown* (never "clean").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MANIFEST_VERSION", "ArtifactRef", "Provenance", "StaleArtifact", "TrainingManifest", "subject_of"]

MANIFEST_VERSION = 1


def subject_of(key: bytes, user_id: str) -> str:
    """The keyed hash provenance rows hold instead of ``user_id`` (64 hex characters)."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, order=True)
class ArtifactRef:
    """The primary key of one stored artifact (scope, owner, kind, key)."""

    scope: str
    owner: str
    kind: str
    key: str

    def label(self) -> str:
        """A short human-readable name: ``adapter global lora|amazon-rating|default|ab12``."""
        owner = f" {self.owner}" if self.owner else ""
        return f"{self.kind} {self.scope}{owner} {self.key}"

    def to_dict(self) -> dict[str, str]:
        return {"scope": self.scope, "owner": self.owner, "kind": self.kind, "key": self.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactRef:
        return cls(str(data["scope"]), str(data.get("owner") or ""), str(data["kind"]), str(data["key"]))


@dataclass(frozen=True)
class TrainingManifest:
    """What trained one artifact: handed to ``Store.put_artifact(..., manifest=)``.

    Args:
        users: user id -> that user's rows (examples, pairs, entries) the artifact learned
            from; 0 for a user of the population it was fitted over whose rows it did not
            learn (kept so a rebuild sees the same population; deleting them marks nothing).
        task: the task it was trained for, if any.
        options: what a rebuild re-runs, JSON-ready (a training job: method, scope,
            owner, task, config).
        inherits: artifacts it started from (a user adapter initialized from the global
            one); their users count as its own, stale marks included.
        excluded: users explicitly left out when it was (re)built (a retrain's deleted users).
        recorded_at: when it was trained (Unix seconds).
    """

    users: Mapping[str, int]
    task: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    inherits: tuple[ArtifactRef, ...] = ()
    excluded: int = 0
    recorded_at: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        bad = [u for u, n in self.users.items() if not isinstance(u, str) or not u or int(n) < 0]
        if bad:
            raise ValueError(f"TrainingManifest.users needs non-empty user ids and counts >= 0; bad: {bad[:3]}")

    def summary(self) -> dict[str, Any]:
        """The JSON stored in the artifact's ``payload["manifest"]``: counts, never user ids
        (options pass through JSON: tuples become lists, unknown objects strings)."""
        summary = {
            "version": MANIFEST_VERSION,
            "users": sum(1 for n in self.users.values() if n > 0),
            "population": len(self.users),
            "examples": int(sum(self.users.values())),
            "task": self.task,
            "options": dict(self.options),
            "inherits": [r.to_dict() for r in self.inherits],
            "excluded": self.excluded,
            "recorded_at": self.recorded_at,
        }
        return json.loads(json.dumps(summary, default=str))


@dataclass(frozen=True)
class Provenance:
    """The stored provenance of one artifact: subject -> rows learned, and the deleted ones.

    ``known`` is False for an artifact without a manifest (written before provenance was
    recorded); then ``users`` is empty and says nothing.
    """

    ref: ArtifactRef
    known: bool
    users: Mapping[str, int]  # subject -> examples, every recorded subject (deleted ones too)
    deleted: Mapping[str, int]  # subject -> deleted_at, the users whose deletion made it stale

    @property
    def stale(self) -> bool:
        return bool(self.deleted)

    def includes(self, subject: str) -> bool:
        """Whether the artifact learned from ``subject`` (a :func:`subject_of` hash)."""
        return self.users.get(subject, 0) > 0


@dataclass(frozen=True)
class StaleArtifact:
    """An artifact that learned from users who have since been deleted.

    ``deleted_subjects`` are the keyed hashes of those users (what a rebuild excludes);
    ``name`` is the artifact's load name when it has one (an adapter's), else None.
    """

    ref: ArtifactRef
    name: str | None
    deleted_subjects: tuple[str, ...]
    stale_since: int  # when the first of them was deleted (Unix seconds)
    manifest: Mapping[str, Any] | None = None

    @property
    def deleted_users(self) -> int:
        return len(self.deleted_subjects)

    def describe(self) -> str:
        """One line for people: what it is and why it is stale."""
        since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.stale_since))
        what = f"{self.name} ({self.ref.label()})" if self.name else self.ref.label()
        return f"{what}: learned from {self.deleted_users} deleted user(s), stale since {since} UTC"
