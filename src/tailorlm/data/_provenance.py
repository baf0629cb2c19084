"""The SQL behind training provenance (table ``artifact_users``; the why is in ``provenance``).

Every function takes an open connection and runs inside the caller's transaction, so a
manifest is written with its artifact, and a deletion marks artifacts stale with the
deletion itself: a crash can never leave a deleted user's artifacts unmarked.

What this module leaves out: the types and the privacy trade-off (``provenance``), and
the transactions (``Store``'s methods in ``store``).
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

import tailorlm.data._tables as t
from tailorlm.data.provenance import ArtifactRef, Provenance, StaleArtifact, TrainingManifest, subject_of

__all__ = [
    "drop_owned",
    "drop_rows",
    "mark_deleted",
    "present_users",
    "provenance_key",
    "read_provenance",
    "stale_artifacts",
    "trained_on",
    "user_deleted",
    "write_manifest",
    "write_rows",
]

_KEY = "provenance_key"
_PU = t.artifact_users.c


def _is(ref: ArtifactRef) -> Any:
    return (_PU.scope == ref.scope) & (_PU.owner == ref.owner) & (_PU.kind == ref.kind) & (_PU.key == ref.key)


def provenance_key(conn: Connection) -> bytes:
    """The store's random HMAC key for subjects, created on first use (concurrent creators agree:
    the first insert wins and everyone reads it back)."""
    from tailorlm.data._writer import upsert

    q = select(t.meta.c.value).where(t.meta.c.key == _KEY)
    value = conn.execute(q).scalar()
    if value is None:
        upsert(conn, t.meta, [{"key": _KEY, "value": secrets.token_hex(32)}], update=False)
        value = conn.execute(q).scalar_one()
    return bytes.fromhex(value)


def present_users(conn: Connection, user_ids: Iterable[str]) -> set[str]:
    """Which of ``user_ids`` are stored, their rows share-locked on PostgreSQL until the caller
    commits: a ``delete_user`` running meanwhile waits, then marks the rows written here stale
    (without the lock it could mark before they exist and leave them unmarked)."""
    ids = sorted(set(user_ids))
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        q = select(t.users.c.user_id).where(t.users.c.user_id.in_(ids[i : i + 500])).with_for_update(read=True)
        found.update(conn.execute(q).scalars())
    return found


def write_rows(
    conn: Connection,
    ref: ArtifactRef,
    subjects: Mapping[str, int],
    inherits: Sequence[ArtifactRef] = (),
    deleted: Mapping[str, int] | None = None,
) -> None:
    """Replace ``ref``'s rows: ``subjects`` (subject -> examples; ``deleted``: subject -> when
    that user was found deleted, a stale mark from the start) plus every row of the artifacts
    it inherits from, their stale marks included (what a parent learned, the child holds too)."""
    merged: dict[str, list[Any]] = {s: [int(n), (deleted or {}).get(s)] for s, n in subjects.items()}
    for parent in inherits:
        for subject, n, deleted_at in conn.execute(
            select(_PU.subject, _PU.examples, _PU.deleted_at).where(_is(parent))
        ):
            row = merged.setdefault(subject, [0, None])
            row[0] += int(n)
            row[1] = row[1] or deleted_at
    conn.execute(t.artifact_users.delete().where(_is(ref)))
    rows = [{**ref.to_dict(), "subject": s, "examples": n, "deleted_at": d} for s, (n, d) in sorted(merged.items())]
    for i in range(0, len(rows), 1000):
        conn.execute(t.artifact_users.insert(), rows[i : i + 1000])


def write_manifest(conn: Connection, ref: ArtifactRef, manifest: TrainingManifest) -> None:
    """Store ``manifest``'s users as ``ref``'s rows. A contributor deleted while the artifact
    trained is recorded too, with a stale mark from the start (it did learn from them); a
    population-only user who is gone is left out."""
    key, now = provenance_key(conn), int(time.time())
    present = present_users(conn, manifest.users)
    users = {u: int(n) for u, n in manifest.users.items() if n > 0 or u in present}
    gone = {subject_of(key, u): now for u in users if u not in present}
    write_rows(conn, ref, {subject_of(key, u): n for u, n in users.items()}, manifest.inherits, gone)


def user_deleted(conn: Connection, user_id: str) -> tuple[int, list[StaleArtifact]]:
    """In ``delete_user``'s transaction: drop the provenance of the user's own artifacts, mark
    every other artifact that learned from them stale. (rows dropped, newly stale artifacts)."""
    owned = drop_owned(conn, user_id)
    marked, dropped = mark_deleted(conn, subject_of(provenance_key(conn), user_id), int(time.time()))
    return owned + dropped, stale_artifacts(conn, refs=marked) if marked else []


def drop_rows(conn: Connection, ref: ArtifactRef) -> int:
    """Forget ``ref``'s provenance (the artifact is deleted, or replaced without a manifest)."""
    return conn.execute(t.artifact_users.delete().where(_is(ref))).rowcount


def drop_owned(conn: Connection, user_id: str) -> int:
    """Rows of the artifacts ``user_id`` owns (scope 'user'): they are deleted with the user."""
    return conn.execute(t.artifact_users.delete().where((_PU.scope == "user") & (_PU.owner == user_id))).rowcount


def mark_deleted(conn: Connection, subject: str, now: int) -> tuple[list[ArtifactRef], int]:
    """The user behind ``subject`` is being deleted: mark every artifact that learned from them
    stale (their row keeps only the subject and ``now``) and drop the rows that only list them
    in a population. Returns (newly stale artifacts, rows dropped)."""
    learned = (_PU.subject == subject) & (_PU.examples > 0) & _PU.deleted_at.is_(None)
    q = select(_PU.scope, _PU.owner, _PU.kind, _PU.key).where(learned).order_by(_PU.scope, _PU.owner, _PU.kind)
    refs = [ArtifactRef(*r) for r in conn.execute(q)]
    conn.execute(t.artifact_users.update().where(learned).values(deleted_at=now))
    dropped = conn.execute(t.artifact_users.delete().where((_PU.subject == subject) & (_PU.examples == 0))).rowcount
    return refs, dropped


def _artifact_payload(conn: Connection, ref: ArtifactRef) -> dict[str, Any] | None:
    c = t.artifacts.c
    q = select(c.payload).where(c.scope == ref.scope, c.owner == ref.owner, c.kind == ref.kind, c.key == ref.key)
    row = conn.execute(q).first()
    return None if row is None else dict(row[0] or {})


def read_provenance(conn: Connection, ref: ArtifactRef) -> Provenance:
    """``ref``'s recorded subjects and stale marks; ``known`` says whether it has a manifest."""
    payload = _artifact_payload(conn, ref) or {}
    users: dict[str, int] = {}
    deleted: dict[str, int] = {}
    for subject, n, deleted_at in conn.execute(select(_PU.subject, _PU.examples, _PU.deleted_at).where(_is(ref))):
        users[subject] = int(n)
        if deleted_at is not None:
            deleted[subject] = int(deleted_at)
    return Provenance(ref=ref, known=isinstance(payload.get("manifest"), dict), users=users, deleted=deleted)


def stale_artifacts(
    conn: Connection, *, kind: str | None = None, refs: Iterable[ArtifactRef] | None = None
) -> list[StaleArtifact]:
    """Every artifact with a stale mark (of ``kind``; among ``refs``), in key order."""
    q = select(_PU.scope, _PU.owner, _PU.kind, _PU.key, _PU.subject, _PU.deleted_at).where(_PU.deleted_at.is_not(None))
    if kind is not None:
        q = q.where(_PU.kind == kind)
    wanted = set(refs) if refs is not None else None
    marks: dict[ArtifactRef, list[tuple[str, int]]] = defaultdict(list)
    for scope, owner, k, key, subject, deleted_at in conn.execute(q):
        ref = ArtifactRef(scope, owner, k, key)
        if wanted is None or ref in wanted:
            marks[ref].append((subject, int(deleted_at)))
    out = []
    for ref in sorted(marks):
        payload = _artifact_payload(conn, ref)
        if payload is None:  # rows of a vanished artifact: nothing to serve or rebuild
            continue
        name = payload.get("name")
        manifest = payload.get("manifest")
        out.append(
            StaleArtifact(
                ref=ref,
                name=name if isinstance(name, str) else None,
                deleted_subjects=tuple(sorted(s for s, _ in marks[ref])),
                stale_since=min(d for _, d in marks[ref]),
                manifest=manifest if isinstance(manifest, dict) else None,
            )
        )
    return out


def trained_on(conn: Connection, subject: str) -> list[ArtifactRef]:
    """The artifacts that learned from the user behind ``subject`` (rows > 0, not yet deleted)."""
    q = select(_PU.scope, _PU.owner, _PU.kind, _PU.key).where(
        (_PU.subject == subject) & (_PU.examples > 0) & _PU.deleted_at.is_(None)
    )
    return sorted(ArtifactRef(*r) for r in conn.execute(q))
