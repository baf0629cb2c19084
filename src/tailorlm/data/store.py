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
- Trained artifacts record who trained them (``put_artifact(..., manifest=)``); a
  deletion marks the shared ones that learned from the user stale, in the same
  transaction (``provenance`` has the why and the privacy trade-off).

Not here: retrieval ranking (``tailorlm.retrieval``) and dataset parsing
(``tailorlm.data.loaders``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

import tailorlm.data._provenance as prov
import tailorlm.data._queries as queries
import tailorlm.data._tables as t
from tailorlm.data._engine import create_store_engine
from tailorlm.data._lifecycle import delete_user_rows, export_user_rows, remove_file
from tailorlm.data._migrations import migrate
from tailorlm.data._user_cache import UserCache
from tailorlm.data._vectors import AnnIndex, Neighbor
from tailorlm.data._versions import DataVersion, forget_user, read_version
from tailorlm.data._writer import Writer, WriteReport, embedding_rows, ensure_user, register_embedding_model, upsert
from tailorlm.data.derived import Artifact, Fact
from tailorlm.data.provenance import ArtifactRef, Provenance, StaleArtifact, TrainingManifest, subject_of
from tailorlm.data.records import Document, Interaction, Item, Preference, Record, TaskExample, User

# Writer and WriteReport are defined in _writer and re-exported here: this module is the public surface.
__all__ = ["DeletionReport", "Store", "WriteReport", "Writer"]


@dataclass
class DeletionReport:
    """What ``Store.delete_user`` removed: rows per table and the artifact files it deleted,
    and the artifacts of others that learned from the user and are now marked stale."""

    user_id: str
    rows: dict[str, int]
    files: list[str]
    stale: list[StaleArtifact] = field(default_factory=list)


class Store:
    """User data and derived artifacts behind one interface.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///tailorlm.db`` or
            ``postgresql+psycopg://user@127.0.0.1:5432/tailorlm``.
        files_dir: where artifact files are allowed to live; ``delete_user`` only
            removes files under it. Default: next to a SQLite file, else ``./tailorlm-files``.
        history_cache_entries: how many history entries this process keeps between
            requests (``user_cache``, valid while the user's data version holds); 0: none.

    Example:
        >>> store = Store("sqlite://")
        >>> store.add([Document(user_id="u1", text="Loved the strings", rating=5)]).records
        1
        >>> [d.text for d in store.get_documents(user_id="u1")]
        ['Loved the strings']
    """

    def __init__(
        self, url: str, *, files_dir: str | Path | None = None, echo: bool = False, history_cache_entries: int = 4096
    ) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"store url {url!r}: only sqlite and postgresql are supported")
        if backend == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        sqlite_file = backend == "sqlite" and parsed.database not in (None, "", ":memory:")
        if sqlite_file:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = parsed.render_as_string(hide_password=True)
        self.engine: Engine = create_store_engine(parsed, echo=echo)
        self.schema_version = migrate(self.engine)
        self.ann = AnnIndex(self.engine)  # nearest(): pgvector HNSW when the server has it, else exact
        self.user_cache = UserCache(history_cache_entries)
        if files_dir is None:
            if sqlite_file:
                files_dir = Path(parsed.database).expanduser().resolve().parent / "files"
            else:
                files_dir = Path("tailorlm-files")
        self.files_dir = Path(files_dir).resolve()

    @classmethod
    def from_settings(cls, settings: Any) -> Store:
        return cls(
            settings.resolved_store_url,
            files_dir=Path(settings.cache_dir) / "files",
            history_cache_entries=settings.history_cache_entries,
        )

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
        """Rows per table (users, items, documents, ...), the whole store."""
        with self.engine.connect() as conn:
            return queries.count_rows(conn)

    def user_counts(self, *, user_id: str) -> dict[str, int]:
        """Rows of ``user_id`` per user table."""
        with self.engine.connect() as conn:
            return queries.count_user_rows(conn, user_id)

    def list_users(self, *, limit: int | None = None, offset: int = 0) -> list[str]:
        q = select(t.users.c.user_id).order_by(t.users.c.user_id).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def data_version(self, *, user_id: str) -> DataVersion:
        """The version of the user's history rows (and of the item catalogue): it changes,
        in the writer's transaction, with every write or deletion of them, by any process."""
        with self.engine.connect() as conn:
            return read_version(conn, user_id)

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

    def get_documents(
        self,
        *,
        user_id: str,
        doc_kind: str | None = None,
        before: int | None = None,
        exclude_ids: Sequence[str] = (),
        limit: int | None = None,
        newest_first: bool = False,
        offset: int = 0,
    ) -> list[Document]:
        """The user's documents, oldest first (undated last), or ``newest_first`` (with
        ``limit``: the latest few, read without reading the rest); ``before`` is strict;
        ``limit`` and ``offset`` page through them."""
        filters = {"doc_kind": doc_kind, "before": before, "exclude_ids": exclude_ids, "limit": limit}
        q = queries.documents_query([t.documents], user_id=user_id, newest_first=newest_first, offset=offset, **filters)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [Document(**queries.without(r, "source")) for r in rows]

    def get_document_rows(
        self,
        *,
        user_id: str,
        doc_kind: str | None = None,
        before: int | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[tuple[str, str, str, int | None, float | None, str | None, str | None, str | None]]:
        """The request-path read: (doc_id, text, doc_kind, timestamp, rating, title, item_id, label) tuples.

        ``label`` is ``metadata["label"]``: the user's own categorical answer for the document
        (a LaMP-2 tag), which history lines show like a rating or a title.

        Same filters and order as :meth:`get_documents`, but only the columns retrieval
        needs and no record validation (it ran on write): at 1,000 documents this is
        ~4x faster than building records (benchmarks/RESULTS.md, overhead).
        """
        c = t.documents.c
        cols = [c.doc_id, c.text, c.doc_kind, c.timestamp, c.rating, c.title, c.item_id, c.metadata]
        q = queries.documents_query(
            cols, user_id=user_id, doc_kind=doc_kind, before=before, exclude_ids=exclude_ids, limit=None
        )
        with self.engine.connect() as conn:
            return [(*r[:7], queries.label_of(r[7])) for r in conn.execute(q).all()]

    def get_interactions(
        self,
        *,
        user_id: str,
        interaction: str | None = None,
        before: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Interaction]:
        """The user's interactions, oldest first (undated last); ``before`` is strict;
        ``limit`` and ``offset`` page through them."""
        q = queries.interactions_query(
            user_id=user_id, interaction=interaction, before=before, limit=limit, offset=offset
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [Interaction(**queries.without(r, "source")) for r in rows]

    def get_preferences(
        self, *, user_id: str, dimension: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[Preference]:
        """The user's preference pairs by time; ``limit`` and ``offset`` page through them."""
        c = t.preferences.c
        q = select(t.preferences).where(c.user_id == user_id)
        if dimension is not None:
            q = q.where(c.dimension == dimension)
        with self.engine.connect() as conn:
            rows = conn.execute(queries.page(q.order_by(c.timestamp, c.pref_id), limit, offset)).mappings().all()
        return [queries.preference_from_row(r) for r in rows]

    def get_examples(self, *, task: str, user_id: str | None = None) -> list[TaskExample]:
        """Task examples; ``user_id=None`` lists every user's (offline evaluation only)."""
        c = t.examples.c
        q = select(t.examples).where(c.task == task)
        if user_id is not None:
            q = q.where(c.user_id == user_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.user_id, c.example_id)).mappings().all()
        return [TaskExample(**queries.without(r, "source")) for r in rows]

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
            register_embedding_model(conn, model=model, dim=dim, version=version, now=now)
            ensure_user(conn, user_id)
            rows = embedding_rows(user_id, model, version, doc_ids, vectors, texts, now=now)
            upsert(conn, t.embeddings, rows, update=True)
            self.ann.on_write(conn, model=model, dim=dim, rows=rows)  # the HNSW side table, same transaction

    def get_embeddings(
        self, *, user_id: str, model: str, doc_ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray, list[str]]:
        """Return (doc_ids, matrix (n, dim) float32, text hashes) for one user and one model."""
        with self.engine.connect() as conn:
            return queries.read_embeddings(conn, user_id=user_id, model=model, doc_ids=doc_ids)

    def nearest(
        self, model: str, query: np.ndarray, k: int, *, users: Sequence[str] | None = None, exact: bool = False
    ) -> list[Neighbor]:
        """The ``k`` vectors of ``model`` closest to ``query`` (cosine) across users, best first.

        HNSW (pgvector) where the server has it, else exact; ``users`` restricts the search
        to those users' vectors, ``exact=True`` skips the index. Tuning: ``store.ann``.
        """
        return self.ann.nearest(model, query, k, users=users, exact=exact)

    # -- derived artifacts and facts --------------------------------------------------

    def put_artifact(self, artifact: Artifact, *, manifest: TrainingManifest | None = None) -> None:
        """Insert or replace the artifact at (scope, owner, kind, key), with its provenance.

        ``manifest``: who trained it; its summary goes into ``payload["manifest"]`` and its
        users (as keyed hashes) into ``artifact_users``, replacing the previous version's
        rows and so clearing a stale mark. Without one the new version's provenance is
        unknown and the old rows are dropped.
        """
        row = artifact.model_dump()
        if manifest is not None:
            row["payload"] = {**row["payload"], "manifest": manifest.summary()}
        ref = ArtifactRef(artifact.scope, artifact.owner, artifact.kind, artifact.key)
        with self.engine.begin() as conn:
            if artifact.scope == "user":
                ensure_user(conn, artifact.owner)
            upsert(conn, t.artifacts, [row], update=True)
            if manifest is None:
                prov.drop_rows(conn, ref)
            else:
                prov.write_manifest(conn, ref, manifest)

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
            prov.drop_rows(conn, ArtifactRef(scope, owner, kind, key))
        remove_file(self.files_dir, art.path)
        return True

    # -- training provenance (see tailorlm.data.provenance) ----------------------------

    def subjects_of(self, user_ids: Iterable[str]) -> dict[str, str]:
        """user id -> the keyed hash that stands for it in provenance rows and stale marks."""
        with self.engine.begin() as conn:
            key = prov.provenance_key(conn)
        return {u: subject_of(key, u) for u in user_ids}

    def provenance(self, ref: ArtifactRef) -> Provenance:
        """Who trained the artifact ``ref`` (subjects and their rows) and its stale marks."""
        with self.engine.connect() as conn:
            return prov.read_provenance(conn, ref)

    def stale_artifacts(self, *, kind: str | None = None) -> list[StaleArtifact]:
        """Artifacts that learned from a since-deleted user, until they are rebuilt."""
        with self.engine.connect() as conn:
            return prov.stale_artifacts(conn, kind=kind)

    def trained_on(self, *, user_id: str) -> list[ArtifactRef]:
        """The artifacts whose recorded training data includes rows of ``user_id``."""
        subject = self.subjects_of([user_id])[user_id]
        with self.engine.connect() as conn:
            return prov.trained_on(conn, subject)

    def add_fact(self, fact: Fact) -> None:
        row = fact.model_dump()
        row["fact_source"] = row.pop("source")
        with self.engine.begin() as conn:
            ensure_user(conn, fact.user_id)
            upsert(conn, t.facts, [row], update=True)

    def get_facts(
        self, *, user_id: str, valid_only: bool = True, limit: int | None = None, offset: int = 0
    ) -> list[Fact]:
        """The user's facts, oldest first; ``limit`` and ``offset`` page through them."""
        c = t.facts.c
        q = select(t.facts).where(c.user_id == user_id)
        if valid_only:
            q = q.where(c.valid_to.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(queries.page(q.order_by(c.valid_from, c.fact_id), limit, offset)).mappings().all()
        return [queries.fact_from_row(r) for r in rows]

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

        Rows go in one transaction, and in it every other artifact that learned from the
        user is marked stale (listed in the report's ``stale``); files are removed after
        it commits (a crash in between leaves orphan files, never rows pointing at
        missing files).
        """
        with self.engine.begin() as conn:
            rows, paths = delete_user_rows(conn, user_id)
            rows["artifact_users"], stale = prov.user_deleted(conn, user_id)
            forget_user(conn, user_id)
        self.user_cache.forget(user_id)
        removed = [p for p in paths if remove_file(self.files_dir, p)]
        return DeletionReport(user_id=user_id, rows=rows, files=removed, stale=stale)

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
            out.update(export_user_rows(conn, user_id))
        arts = self.list_artifacts(scope="user", owner=user_id)
        out["artifacts"] = [a.model_dump() for a in arts]
        return out
