"""The store's reads: counts, the filtered selects it shares between methods, rows -> records.

Every per-user select filters on ``user_id`` first (the leading primary-key column,
so an index scan). Columns renamed on write (``pref_source``, ``fact_source``, the
load's ``source``) are mapped back here.

What this module leaves out: executing whole public reads (``Store``'s methods in
``store``), writes (``_writer``) and the per-user export/deletion (``_lifecycle``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, func, select

import tailorlm.data._tables as t
from tailorlm.data.derived import Fact
from tailorlm.data.records import Preference

__all__ = [
    "COUNTED",
    "count_rows",
    "count_user_rows",
    "documents_query",
    "fact_from_row",
    "interactions_query",
    "preference_from_row",
    "read_embeddings",
    "without",
]

# The tables ``Store.counts`` reports, by the names load reports use.
COUNTED = {
    "users": t.users,
    "items": t.items,
    "documents": t.documents,
    "interactions": t.interactions,
    "preferences": t.preferences,
    "examples": t.examples,
    "embeddings": t.embeddings,
    "artifacts": t.artifacts,
    "facts": t.facts,
}


def count_rows(conn: Connection) -> dict[str, int]:
    return {name: conn.execute(select(func.count()).select_from(table)).scalar_one() for name, table in COUNTED.items()}


def count_user_rows(conn: Connection, user_id: str) -> dict[str, int]:
    return {
        tb.name: conn.execute(select(func.count()).select_from(tb).where(tb.c.user_id == user_id)).scalar_one()
        for tb in t.USER_TABLES
    }


def documents_query(
    cols: Sequence[Any],
    *,
    user_id: str,
    doc_kind: str | None,
    before: int | None,
    exclude_ids: Sequence[str],
    limit: int | None,
    newest_first: bool = False,
    offset: int = 0,
) -> Select[Any]:
    """One user's documents, oldest first (undated last), or ``newest_first`` (undated last
    too); ``before`` is strict."""
    c = t.documents.c
    q = select(*cols).where(c.user_id == user_id)
    if doc_kind is not None:
        q = q.where(c.doc_kind == doc_kind)
    if before is not None:
        q = q.where(c.timestamp < before)
    if exclude_ids:
        q = q.where(c.doc_id.not_in(list(exclude_ids)))
    if newest_first:
        q = q.order_by(c.timestamp.is_(None), c.timestamp.desc(), c.doc_id.desc())
    else:
        q = q.order_by(c.timestamp.is_(None), c.timestamp, c.doc_id)
    return page(q, limit, offset)


def page(q: Select[Any], limit: int | None, offset: int) -> Select[Any]:
    """``q`` from its ``offset``-th row, at most ``limit`` rows (None: all)."""
    q = q.offset(offset) if offset else q
    return q.limit(limit) if limit is not None else q


def interactions_query(
    *, user_id: str, interaction: str | None, before: int | None, limit: int | None = None, offset: int = 0
) -> Select[Any]:
    """One user's interactions, oldest first (undated last); ``before`` is strict."""
    c = t.interactions.c
    q = select(t.interactions).where(c.user_id == user_id)
    if interaction is not None:
        q = q.where(c.interaction == interaction)
    if before is not None:
        q = q.where(c.timestamp < before)
    return page(q.order_by(c.timestamp.is_(None), c.timestamp, c.interaction_id), limit, offset)


def label_of(metadata: Any) -> str | None:
    """``metadata["label"]`` as text (a LaMP-2 tag), or None."""
    label = metadata.get("label") if isinstance(metadata, dict) else None
    return None if label is None else str(label)


def without(row: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """``row`` less ``keys`` (columns that are not fields of the record)."""
    return {k: v for k, v in row.items() if k not in keys}


def preference_from_row(row: Mapping[str, Any]) -> Preference:
    return Preference(source=row["pref_source"], **without(row, "source", "pref_source"))


def fact_from_row(row: Mapping[str, Any]) -> Fact:
    return Fact(source=row["fact_source"], **without(row, "fact_source"))


def read_embeddings(
    conn: Connection, *, user_id: str, model: str, doc_ids: Sequence[str] | None
) -> tuple[list[str], np.ndarray, list[str]]:
    """(doc_ids, matrix (n, dim) float32, text hashes) of one user and one model, by doc id."""
    c = t.embeddings.c
    q = select(c.doc_id, c.vector, c.dim, c.text_hash).where(c.user_id == user_id, c.model == model)
    if doc_ids is not None:
        q = q.where(c.doc_id.in_(list(doc_ids)))
    rows = conn.execute(q.order_by(c.doc_id)).all()
    if not rows:
        # An empty (0, dim) matrix still tells the caller the model's dimension.
        dim = conn.execute(select(t.embedding_models.c.dim).where(t.embedding_models.c.model == model)).scalar()
        return [], np.zeros((0, dim or 0), dtype=np.float32), []
    mat = np.stack([np.frombuffer(r.vector, dtype=np.float32, count=r.dim) for r in rows])
    return [r.doc_id for r in rows], mat, [r.text_hash for r in rows]
