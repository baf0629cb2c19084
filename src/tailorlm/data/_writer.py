"""Writing records into the store's tables: record -> row, the dialect upsert, the batching Writer.

Rows are upserted by primary key (the natural key), so loading the same file
twice changes nothing. A record that names a user or item the store does not know
first gets a stub parent row; a stub never overwrites a user or item that exists.
Embedding models are registered with their dimension on first write.

What this module leaves out: opening and committing the transaction
(``Store.writer`` and ``Store.add`` in ``store``, which re-exports :class:`Writer`
and :class:`WriteReport`) and every read (``_queries``).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, Table, select

import tailorlm.data._tables as t
from tailorlm.data.records import Document, Interaction, Item, Preference, Record, TaskExample, User

__all__ = [
    "WriteReport",
    "Writer",
    "embedding_rows",
    "ensure_user",
    "record_row",
    "register_embedding_model",
    "text_hash",
    "upsert",
]


@dataclass
class WriteReport:
    """What one transaction did: records received and rows each table gained."""

    records: int = 0
    added: dict[str, int] = field(default_factory=dict)


def record_row(rec: Record, source: str | None) -> tuple[Table, dict[str, Any]]:
    """The table ``rec`` goes to and its row there; ``source`` is the load that wrote it."""
    if isinstance(rec, Document):
        return t.documents, {
            "user_id": rec.user_id,
            "doc_id": rec.doc_id,
            "doc_kind": rec.doc_kind,
            "text": rec.text,
            "title": rec.title,
            "rating": rec.rating,
            "item_id": rec.item_id,
            "timestamp": rec.timestamp,
            "metadata": rec.metadata,
            "source": source,
        }
    if isinstance(rec, Interaction):
        return t.interactions, {
            "user_id": rec.user_id,
            "interaction_id": rec.interaction_id,
            "item_id": rec.item_id,
            "interaction": rec.interaction,
            "value": rec.value,
            "timestamp": rec.timestamp,
            "metadata": rec.metadata,
            "source": source,
        }
    if isinstance(rec, Preference):
        return t.preferences, {
            "user_id": rec.user_id,
            "pref_id": rec.pref_id,
            "prompt": rec.prompt,
            "chosen": rec.chosen,
            "rejected": rec.rejected,
            "dimension": rec.dimension,
            "pref_source": rec.source,  # the pair's origin; ``source`` is the load's
            "timestamp": rec.timestamp,
            "source": source,
        }
    if isinstance(rec, TaskExample):
        return t.examples, {
            "user_id": rec.user_id,
            "task": rec.task,
            "example_id": rec.example_id,
            "input": rec.input,
            "target": rec.target,
            "doc_id": rec.doc_id,
            "timestamp": rec.timestamp,
            "metadata": rec.metadata,
            "source": source,
        }
    if isinstance(rec, User):
        return t.users, rec.model_dump(exclude={"kind"})
    if isinstance(rec, Item):
        return t.items, rec.model_dump(exclude={"kind"})
    raise TypeError(f"not a tailorlm record: {type(rec).__name__}")


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], *, update: bool) -> None:
    """Bulk upsert by primary key (the natural key); dialect-specific ON CONFLICT.

    ``update=False`` inserts only rows whose key is new (stub parents never
    overwrite); ``update=True`` replaces the other columns of existing rows.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - guarded in Store.__init__
        raise ValueError(f"unsupported database {conn.dialect.name}")
    pk = [c.name for c in table.primary_key.columns]
    # The same key twice in one batch: the last one wins, as a sequential upsert would.
    unique = list({tuple(r[k] for k in pk): r for r in rows}.values())
    stmt = insert(table)
    cols = [c for c in unique[0] if c not in pk]
    if update and cols:
        stmt = stmt.on_conflict_do_update(index_elements=pk, set_={c: stmt.excluded[c] for c in cols})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=pk)
    conn.execute(stmt, unique)


def ensure_user(conn: Connection, user_id: str) -> None:
    """A stub row for ``user_id`` unless the user exists (user-owned rows reference it)."""
    upsert(conn, t.users, [{"user_id": user_id, "attributes": {}}], update=False)


def register_embedding_model(conn: Connection, *, model: str, dim: int, version: str, now: int) -> None:
    """Fix ``model``'s dimension on its first write; refuse vectors of another dimension later.

    Raises:
        ValueError: ``model`` already has vectors of another dimension in this store.
    """
    known = conn.execute(select(t.embedding_models).where(t.embedding_models.c.model == model)).mappings().first()
    if known is None:
        conn.execute(t.embedding_models.insert().values(model=model, dim=dim, version=version, created_at=now))
    elif known["dim"] != dim:
        raise ValueError(
            f"embedding model {model!r} has dimension {known['dim']} in this store, got {dim}; "
            "vectors of different models are never mixed: use another model name"
        )


def embedding_rows(
    user_id: str,
    model: str,
    version: str,
    doc_ids: Sequence[str],
    vectors: np.ndarray,
    texts: Sequence[str] | None,
    *,
    now: int,
) -> list[dict[str, Any]]:
    """``embeddings`` rows for one user and model (float32 bytes; a text hash when texts are given)."""
    dim = int(vectors.shape[1])
    return [
        {
            "user_id": user_id,
            "model": model,
            "doc_id": d,
            "dim": dim,
            "vector": np.asarray(vec, dtype=np.float32).tobytes(),
            "model_version": version,
            "text_hash": text_hash(texts[i]) if texts is not None else "",
            "created_at": now,
        }
        for i, (d, vec) in enumerate(zip(doc_ids, vectors, strict=True))
    ]


def text_hash(text: str) -> str:
    """A short digest of the text an embedding was computed from (a changed text shows)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class Writer:
    """Buffers records and flushes them in batches inside the store's open transaction."""

    def __init__(self, conn: Connection, *, source: str | None, batch_size: int) -> None:
        self._conn = conn
        self._source = source
        self._batch_size = batch_size
        self._buffer: list[Record] = []
        self._known_users: set[str] = set()  # stubs already ensured in this transaction
        self._known_items: set[str] = set()
        self.records = 0

    def add(self, record: Record) -> None:
        self._buffer.append(record)
        self.records += 1
        if len(self._buffer) >= self._batch_size:
            self.flush()

    def add_all(self, records: Iterable[Record]) -> None:
        for r in records:
            self.add(r)

    def flush(self) -> None:
        if not self._buffer:
            return
        by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
        stub_users: set[str] = set()
        stub_items: set[str] = set()
        for rec in self._buffer:
            table, row = record_row(rec, self._source)
            by_table[table.name].append(row)
            if uid := getattr(rec, "user_id", None):
                stub_users.add(uid)
            if (iid := getattr(rec, "item_id", None)) and not isinstance(rec, Item):
                stub_items.add(iid)
        self._buffer.clear()
        # Parents first: stubs never overwrite a known user or item; explicit records do.
        stub_u = [{"user_id": u, "attributes": {}} for u in sorted(stub_users - self._known_users)]
        upsert(self._conn, t.users, stub_u, update=False)
        stub_i = [{"item_id": i, "attributes": {}} for i in sorted(stub_items - self._known_items)]
        upsert(self._conn, t.items, stub_i, update=False)
        self._known_users |= stub_users
        self._known_items |= stub_items
        for table in (t.users, t.items, t.documents, t.interactions, t.preferences, t.examples):
            upsert(self._conn, table, by_table.get(table.name, []), update=True)
