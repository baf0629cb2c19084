"""The one store for all user data and derived artifacts (SQLite by default, PostgreSQL by URL).

Design points, each a lesson from peers' trackers:
- Every per-user call takes ``user_id=`` explicitly; nothing reads another user's rows.
- Writes go through :class:`Writer` inside one transaction: a failed load leaves the
  store exactly as it was. Rows are upserted by natural keys, so loading a file
  twice changes nothing.
- Embeddings are stored with the model name, version and dimension; a model's
  dimension is fixed the first time it writes, and a mismatch is refused rather
  than silently mixing vector spaces.
- ``delete_user`` removes every row, vector, derived artifact and artifact file of
  that user, and nothing of anyone else; ``export_user`` returns all of it as JSON.

Not here: retrieval ranking (``tailorlm.retrieval``) and dataset parsing
(``tailorlm.data.loaders``).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select
from sqlalchemy.engine import make_url

from tailorlm.data import _tables as t
from tailorlm.data._migrations import migrate
from tailorlm.data.derived import Artifact, Fact
from tailorlm.data.records import (
    Document,
    Interaction,
    Item,
    Preference,
    Record,
    TaskExample,
    User,
)

__all__ = ["DeletionReport", "Store", "WriteReport", "Writer"]

_COUNTED = {
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


@dataclass
class WriteReport:
    """What one transaction did: records received and rows each table gained."""

    records: int = 0
    added: dict[str, int] = field(default_factory=dict)


@dataclass
class DeletionReport:
    user_id: str
    rows: dict[str, int]
    files: list[str]


def _row(rec: Record, source: str | None) -> tuple[Table, dict[str, Any]]:
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
            "pref_source": rec.source,
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


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]], *, update: bool) -> None:
    """Bulk upsert by primary key (the natural key); dialect-specific ON CONFLICT."""
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
            table, row = _row(rec, self._source)
            by_table[table.name].append(row)
            if uid := getattr(rec, "user_id", None):
                stub_users.add(uid)
            if (iid := getattr(rec, "item_id", None)) and not isinstance(rec, Item):
                stub_items.add(iid)
        self._buffer.clear()
        # Parents first: stubs never overwrite a known user or item; explicit records do.
        stub_u = [{"user_id": u, "attributes": {}} for u in sorted(stub_users - self._known_users)]
        _insert(self._conn, t.users, stub_u, update=False)
        stub_i = [{"item_id": i, "attributes": {}} for i in sorted(stub_items - self._known_items)]
        _insert(self._conn, t.items, stub_i, update=False)
        self._known_users |= stub_users
        self._known_items |= stub_items
        for table in (t.users, t.items, t.documents, t.interactions, t.preferences, t.examples):
            _insert(self._conn, table, by_table.get(table.name, []), update=True)


class Store:
    """User data and derived artifacts behind one interface.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///tailorlm.db`` or
            ``postgresql+psycopg://user@127.0.0.1:5432/tailorlm``.
        files_dir: where artifact files are allowed to live; ``delete_user`` only
            removes files under it. Default: next to a SQLite file, else ``./tailorlm-files``.

    Example:
        >>> store = Store("sqlite://")
        >>> store.add([Document(user_id="u1", text="Loved the strings", rating=5)]).records
        1
        >>> [d.text for d in store.get_documents(user_id="u1")]
        ['Loved the strings']
    """

    def __init__(self, url: str, *, files_dir: str | Path | None = None, echo: bool = False) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"store url {url!r}: only sqlite and postgresql are supported")
        if backend == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = parsed.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {"echo": echo}
        if backend == "sqlite":
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                from sqlalchemy.pool import StaticPool

                kwargs["poolclass"] = StaticPool  # one shared in-memory database
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(parsed, **kwargs)
        if backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.schema_version = migrate(self.engine)
        if files_dir is None:
            if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
                files_dir = Path(parsed.database).expanduser().resolve().parent / "files"
            else:
                files_dir = Path("tailorlm-files")
        self.files_dir = Path(files_dir).resolve()

    @classmethod
    def from_settings(cls, settings: Any) -> Store:
        return cls(settings.resolved_store_url, files_dir=Path(settings.cache_dir) / "files")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------

    @contextmanager
    def writer(self, *, source: str | None = None, batch_size: int = 2000) -> Iterator[Writer]:
        """One transaction: everything added commits together, or nothing does."""
        with self.engine.begin() as conn:
            w = Writer(conn, source=source, batch_size=batch_size)
            yield w
            w.flush()

    def add(self, records: Iterable[Record], *, source: str | None = None) -> WriteReport:
        """Upsert records in one transaction and report how many rows each table gained."""
        before = self.counts()
        with self.writer(source=source) as w:
            w.add_all(records)
        after = self.counts()
        return WriteReport(records=w.records, added={k: after[k] - before[k] for k in after})

    def record_load(
        self,
        *,
        source: str,
        path: str,
        sha256: str | None,
        started_at: int,
        records: int,
        skipped: int,
        counts: dict[str, int],
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.loads.insert().values(
                    source=source,
                    path=path,
                    sha256=sha256,
                    started_at=started_at,
                    finished_at=int(time.time()),
                    records=records,
                    skipped=skipped,
                    counts=counts,
                )
            )

    def list_loads(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.loads).order_by(t.loads.c.load_id)).mappings().all()
        return [dict(r) for r in rows]

    # -- reading -----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in _COUNTED.items()
            }

    def user_counts(self, *, user_id: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                tb.name: conn.execute(select(func.count()).select_from(tb).where(tb.c.user_id == user_id)).scalar_one()
                for tb in t.USER_TABLES
            }

    def list_users(self, *, limit: int | None = None, offset: int = 0) -> list[str]:
        q = select(t.users.c.user_id).order_by(t.users.c.user_id).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def has_user(self, *, user_id: str) -> bool:
        return self.get_user(user_id=user_id) is not None

    def get_user(self, *, user_id: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users).where(t.users.c.user_id == user_id)).mappings().first()
        return User(**row) if row else None

    def get_items(self, item_ids: Sequence[str]) -> dict[str, Item]:
        """Catalogue look-up (items are shared, not per user)."""
        out: dict[str, Item] = {}
        ids = list(dict.fromkeys(item_ids))
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = select(t.items).where(t.items.c.item_id.in_(ids[i : i + 500]))
                out.update({r["item_id"]: Item(**r) for r in conn.execute(q).mappings()})
        return out

    def _documents_query(self, cols, *, user_id, doc_kind, before, exclude_ids, limit):
        c = t.documents.c
        q = select(*cols).where(c.user_id == user_id)
        if doc_kind is not None:
            q = q.where(c.doc_kind == doc_kind)
        if before is not None:
            q = q.where(c.timestamp < before)
        if exclude_ids:
            q = q.where(c.doc_id.not_in(list(exclude_ids)))
        q = q.order_by(c.timestamp.is_(None), c.timestamp, c.doc_id)
        return q.limit(limit) if limit is not None else q

    def get_documents(
        self,
        *,
        user_id: str,
        doc_kind: str | None = None,
        before: int | None = None,
        exclude_ids: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[Document]:
        """The user's documents, oldest first (undated last); ``before`` is strict."""
        q = self._documents_query(
            [t.documents], user_id=user_id, doc_kind=doc_kind, before=before, exclude_ids=exclude_ids, limit=limit
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [Document(**{k: v for k, v in r.items() if k != "source"}) for r in rows]

    def get_document_rows(
        self,
        *,
        user_id: str,
        doc_kind: str | None = None,
        before: int | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[tuple[str, str, str, int | None, float | None, str | None, str | None]]:
        """The request-path read: (doc_id, text, doc_kind, timestamp, rating, title, item_id) tuples.

        Same filters and order as :meth:`get_documents`, but only the columns retrieval
        needs and no record validation (it ran on write): at 1,000 documents this is
        ~4x faster than building records (benchmarks/RESULTS.md, overhead).
        """
        c = t.documents.c
        cols = [c.doc_id, c.text, c.doc_kind, c.timestamp, c.rating, c.title, c.item_id]
        q = self._documents_query(
            cols, user_id=user_id, doc_kind=doc_kind, before=before, exclude_ids=exclude_ids, limit=None
        )
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q).all()]

    def get_interactions(
        self, *, user_id: str, interaction: str | None = None, before: int | None = None
    ) -> list[Interaction]:
        c = t.interactions.c
        q = select(t.interactions).where(c.user_id == user_id)
        if interaction is not None:
            q = q.where(c.interaction == interaction)
        if before is not None:
            q = q.where(c.timestamp < before)
        q = q.order_by(c.timestamp.is_(None), c.timestamp, c.interaction_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [Interaction(**{k: v for k, v in r.items() if k != "source"}) for r in rows]

    def get_preferences(self, *, user_id: str, dimension: str | None = None) -> list[Preference]:
        c = t.preferences.c
        q = select(t.preferences).where(c.user_id == user_id)
        if dimension is not None:
            q = q.where(c.dimension == dimension)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.timestamp, c.pref_id)).mappings().all()
        return [
            Preference(
                source=r["pref_source"],
                **{k: v for k, v in r.items() if k not in ("source", "pref_source")},
            )
            for r in rows
        ]

    def get_examples(self, *, task: str, user_id: str | None = None) -> list[TaskExample]:
        """Task examples; ``user_id=None`` lists every user's (offline evaluation only)."""
        c = t.examples.c
        q = select(t.examples).where(c.task == task)
        if user_id is not None:
            q = q.where(c.user_id == user_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.user_id, c.example_id)).mappings().all()
        return [TaskExample(**{k: v for k, v in r.items() if k != "source"}) for r in rows]

    def list_tasks(self) -> dict[str, int]:
        q = select(t.examples.c.task, func.count()).group_by(t.examples.c.task)
        with self.engine.connect() as conn:
            return {task: n for task, n in conn.execute(q)}

    # -- embeddings ----------------------------------------------------------------

    def put_embeddings(
        self,
        *,
        user_id: str,
        model: str,
        version: str,
        doc_ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str] | None = None,
    ) -> None:
        """Store one vector per document for ``model``.

        Raises:
            ValueError: shapes disagree, or ``model`` already has vectors of another
                dimension in this store (re-embed under a new model name instead).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(doc_ids):
            raise ValueError(f"vectors must be (len(doc_ids), dim); got {vectors.shape} for {len(doc_ids)} ids")
        dim = int(vectors.shape[1])
        now = int(time.time())
        with self.engine.begin() as conn:
            known = (
                conn.execute(select(t.embedding_models).where(t.embedding_models.c.model == model)).mappings().first()
            )
            if known is None:
                conn.execute(t.embedding_models.insert().values(model=model, dim=dim, version=version, created_at=now))
            elif known["dim"] != dim:
                raise ValueError(
                    f"embedding model {model!r} has dimension {known['dim']} in this store, got {dim}; "
                    "vectors of different models are never mixed: use another model name"
                )
            _insert(conn, t.users, [{"user_id": user_id, "attributes": {}}], update=False)
            rows = [
                {
                    "user_id": user_id,
                    "model": model,
                    "doc_id": d,
                    "dim": dim,
                    "vector": vec.tobytes(),
                    "model_version": version,
                    "text_hash": _hash(texts[i]) if texts is not None else "",
                    "created_at": now,
                }
                for i, (d, vec) in enumerate(zip(doc_ids, vectors, strict=True))
            ]
            _insert(conn, t.embeddings, rows, update=True)

    def get_embeddings(
        self, *, user_id: str, model: str, doc_ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray, list[str]]:
        """Return (doc_ids, matrix (n, dim) float32, text hashes) for one user and one model."""
        c = t.embeddings.c
        q = select(c.doc_id, c.vector, c.dim, c.text_hash).where(c.user_id == user_id, c.model == model)
        if doc_ids is not None:
            q = q.where(c.doc_id.in_(list(doc_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.doc_id)).all()
            if not rows:
                dim = conn.execute(select(t.embedding_models.c.dim).where(t.embedding_models.c.model == model)).scalar()
                return [], np.zeros((0, dim or 0), dtype=np.float32), []
        mat = np.stack([np.frombuffer(r.vector, dtype=np.float32, count=r.dim) for r in rows])
        return [r.doc_id for r in rows], mat, [r.text_hash for r in rows]

    # -- derived artifacts and facts --------------------------------------------------

    def put_artifact(self, artifact: Artifact) -> None:
        """Insert or replace the artifact at (scope, owner, kind, key)."""
        row = artifact.model_dump()
        with self.engine.begin() as conn:
            if artifact.scope == "user":
                _insert(conn, t.users, [{"user_id": artifact.owner, "attributes": {}}], update=False)
            _insert(conn, t.artifacts, [row], update=True)

    def get_artifact(self, *, scope: str, owner: str, kind: str, key: str = "default") -> Artifact | None:
        c = t.artifacts.c
        q = select(t.artifacts).where(c.scope == scope, c.owner == owner, c.kind == kind, c.key == key)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return Artifact(**row) if row else None

    def list_artifacts(
        self, *, scope: str | None = None, owner: str | None = None, kind: str | None = None
    ) -> list[Artifact]:
        c = t.artifacts.c
        q = select(t.artifacts)
        for col, val in ((c.scope, scope), (c.owner, owner), (c.kind, kind)):
            if val is not None:
                q = q.where(col == val)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.scope, c.owner, c.kind, c.key)).mappings().all()
        return [Artifact(**r) for r in rows]

    def delete_artifact(self, *, scope: str, owner: str, kind: str, key: str = "default") -> bool:
        art = self.get_artifact(scope=scope, owner=owner, kind=kind, key=key)
        if art is None:
            return False
        c = t.artifacts.c
        with self.engine.begin() as conn:
            conn.execute(t.artifacts.delete().where(c.scope == scope, c.owner == owner, c.kind == kind, c.key == key))
        self._remove_file(art.path)
        return True

    def add_fact(self, fact: Fact) -> None:
        row = fact.model_dump()
        row["fact_source"] = row.pop("source")
        with self.engine.begin() as conn:
            _insert(conn, t.users, [{"user_id": fact.user_id, "attributes": {}}], update=False)
            _insert(conn, t.facts, [row], update=True)

    def get_facts(self, *, user_id: str, valid_only: bool = True) -> list[Fact]:
        c = t.facts.c
        q = select(t.facts).where(c.user_id == user_id)
        if valid_only:
            q = q.where(c.valid_to.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.valid_from, c.fact_id)).mappings().all()
        return [Fact(source=r["fact_source"], **{k: v for k, v in r.items() if k != "fact_source"}) for r in rows]

    def invalidate_fact(self, *, user_id: str, fact_id: str, at: int | None = None) -> bool:
        c = t.facts.c
        with self.engine.begin() as conn:
            res = conn.execute(
                t.facts.update()
                .where(c.user_id == user_id, c.fact_id == fact_id, c.valid_to.is_(None))
                .values(valid_to=at if at is not None else int(time.time()))
            )
        return res.rowcount > 0

    def delete_fact(self, *, user_id: str, fact_id: str) -> bool:
        """Forget a fact: its row and any vector a dense ranker cached for it (``fact:<id>``)."""
        c = t.facts.c
        e = t.embeddings.c
        with self.engine.begin() as conn:
            res = conn.execute(t.facts.delete().where(c.user_id == user_id, c.fact_id == fact_id))
            conn.execute(t.embeddings.delete().where(e.user_id == user_id, e.doc_id == f"fact:{fact_id}"))
        return res.rowcount > 0

    # -- user lifecycle -------------------------------------------------------------

    def delete_user(self, *, user_id: str) -> DeletionReport:
        """Remove every row, vector, artifact and artifact file of ``user_id``; nothing else.

        Rows go in one transaction; files are removed after it commits (a crash in
        between leaves orphan files, never rows pointing at missing files).
        """
        rows: dict[str, int] = {}
        c = t.artifacts.c
        with self.engine.begin() as conn:
            owned = (c.scope == "user") & (c.owner == user_id)
            paths = [p for p in conn.execute(select(c.path).where(owned)).scalars() if p]
            rows["artifacts"] = conn.execute(t.artifacts.delete().where(owned)).rowcount
            for tb in t.USER_TABLES:
                rows[tb.name] = conn.execute(tb.delete().where(tb.c.user_id == user_id)).rowcount
            rows["users"] = conn.execute(t.users.delete().where(t.users.c.user_id == user_id)).rowcount
        removed = [p for p in paths if self._remove_file(p)]
        return DeletionReport(user_id=user_id, rows=rows, files=removed)

    def export_user(self, *, user_id: str) -> dict[str, Any]:
        """Everything stored about ``user_id`` as JSON-ready data (GDPR-style export).

        Raises:
            KeyError: unknown user.
        """
        user = self.get_user(user_id=user_id)
        if user is None:
            raise KeyError(f"unknown user {user_id!r}")
        out: dict[str, Any] = {"user": user.model_dump(exclude={"kind"})}
        with self.engine.connect() as conn:
            for tb in t.USER_TABLES:
                pk = [col for col in tb.primary_key.columns]
                rows = conn.execute(select(tb).where(tb.c.user_id == user_id).order_by(*pk)).mappings()
                out[tb.name] = [_jsonable(dict(r)) for r in rows]
        arts = self.list_artifacts(scope="user", owner=user_id)
        out["artifacts"] = [a.model_dump() for a in arts]
        return out

    # -- files ------------------------------------------------------------------------

    def _remove_file(self, path: str | None) -> bool:
        """Delete an artifact file or folder, but only inside ``files_dir``."""
        if not path:
            return False
        p = Path(path).resolve()
        if not p.is_relative_to(self.files_dir) or not p.exists():
            return False
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        return True


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    if "vector" in row and isinstance(row["vector"], bytes | memoryview):
        row["vector"] = np.frombuffer(bytes(row["vector"]), dtype=np.float32).tolist()
    return row


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
