"""Nearest-neighbour search over stored embeddings: pgvector HNSW where the server has it, else exact.

Cross-user (pooled) dense retrieval scans every population vector of a model; exact
search is one matrix product per query, which grows linearly with the population. On a
PostgreSQL server with the ``vector`` extension (pgvector) each model gets a side table
``tailorlm_vec_<digest>`` with a ``vector(dim)`` column and an HNSW index
(``vector_cosine_ops``), and :meth:`AnnIndex.nearest` asks it with ``hnsw.ef_search``
set per query. Everywhere else (SQLite, PostgreSQL without pgvector, dimensions above
pgvector's HNSW limit of 2000) it computes exact cosine similarities in numpy.

The side tables are a derived index, not part of the portable schema (no migration):
``embeddings`` stays the source of truth on every backend. Rows reference their
``embeddings`` row with ``ON DELETE CASCADE``, so ``delete_user`` and ``delete_fact``
remove their vectors with no extra code; ``put_embeddings`` writes both in one
transaction; and the first search per model per process copies any row that a writer
without this code (or before the table existed) left out, found by key and text hash.
A shared advisory lock on writes and an exclusive one on table creation keep a write
from slipping between "table does not exist yet" and the backfill.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError

import tailorlm.data._tables as t

__all__ = ["AnnIndex", "Neighbor"]

_HNSW_MAX_DIM = 2000  # pgvector's limit for HNSW on the vector type
_MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
_BATCH = 1000
_USER_CHUNK = 500  # bound-parameter lists stay far below SQLite's limit


class Neighbor(NamedTuple):
    """One search hit: whose vector, which document, cosine similarity (higher is closer)."""

    user_id: str
    doc_id: str
    score: float


def table_name(model: str) -> str:
    """A safe identifier per model (model names hold '/', '-', dots)."""
    return "tailorlm_vec_" + hashlib.sha1(model.encode("utf-8")).hexdigest()[:16]


def _lock_key(model: str) -> int:
    """A signed 64-bit advisory-lock key for the model's side table."""
    return int.from_bytes(hashlib.sha1(b"tailorlm-vec:" + model.encode("utf-8")).digest()[:8], "big", signed=True)


def _literal(vec: np.ndarray) -> str:
    """pgvector's text form; float32 -> double -> shortest repr round-trips exactly."""
    return "[" + ",".join(map(repr, np.asarray(vec, dtype=np.float32).astype(np.float64).tolist())) + "]"


@dataclass
class AnnIndex:
    """The store's vector search: HNSW on pgvector servers, exact cosine search otherwise.

    Attributes (set them on ``store.ann`` before use):
        enabled: False forces exact search even where pgvector is available.
        m, ef_construction: HNSW build parameters (pgvector's defaults are 16 and 64;
            a larger ef_construction builds slower for better recall at the same ef_search).
        ef_search: candidates per query (at least k, at most pgvector's 1000); recall
            rises and latency grows with it (``benchmarks/bench_ann.py`` measures both).
        build_memory: ``maintenance_work_mem`` for the one index build; a graph that does
            not fit is built on disk, many times slower.
    """

    engine: Engine
    enabled: bool = True
    m: int = 16
    ef_construction: int = 128
    ef_search: int = 100
    build_memory: str = "512MB"
    _version: tuple[int, ...] | None = field(default=None, repr=False)  # pgvector's; () = none
    _synced: set[str] = field(default_factory=set, repr=False)

    @property
    def available(self) -> bool:
        """Whether the server is PostgreSQL with pgvector (created here if installable)."""
        if self._version is None:
            self._version = _ensure_extension(self.engine) if self.engine.dialect.name == "postgresql" else ()
        return self.enabled and bool(self._version)

    def uses_index(self, dim: int) -> bool:
        return self.available and 0 < dim <= _HNSW_MAX_DIM

    def on_write(self, conn: Connection, *, model: str, dim: int, rows: Sequence[dict[str, Any]]) -> None:
        """Mirror freshly upserted ``embeddings`` rows into the model's side table, if it exists."""
        if not rows or not self.uses_index(dim):
            return
        name = table_name(model)
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": _lock_key(model)})
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None:
            return  # built, with these rows, on the first search
        _insert(conn, name, rows)

    def nearest(
        self,
        model: str,
        query: np.ndarray,
        k: int,
        *,
        users: Sequence[str] | None = None,
        exact: bool = False,
    ) -> list[Neighbor]:
        """The ``k`` stored vectors of ``model`` most cosine-similar to ``query``, best first.

        ``users``: only these users' vectors (never anyone else's); None means all.
        ``exact``: skip the index (ground truth for recall measurements).
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if users is not None and not users:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        with self.engine.connect() as conn:
            dim = conn.execute(select(t.embedding_models.c.dim).where(t.embedding_models.c.model == model)).scalar()
        if dim is None:
            return []
        if q.shape[0] != dim:
            raise ValueError(f"query has dimension {q.shape[0]}, model {model!r} has {dim}")
        if exact or not self.uses_index(dim):
            return self._exact(model, q, k, users)
        self._sync(model, dim)
        hits = self._hnsw(model, q, k, users)
        if users is not None and len(hits) < k:
            # pgvector < 0.8 filters after the graph walk (no iterative scan), so a filter can
            # leave fewer than k of ef_search candidates: exact over those users is the answer.
            return self._exact(model, q, k, users)
        return hits

    def _exact(self, model: str, q: np.ndarray, k: int, users: Sequence[str] | None) -> list[Neighbor]:
        c = t.embeddings.c
        base = select(c.user_id, c.doc_id, c.vector, c.dim).where(c.model == model)
        chunks = (
            [None] if users is None else [list(users)[i : i + _USER_CHUNK] for i in range(0, len(users), _USER_CHUNK)]
        )
        rows: list[Any] = []
        with self.engine.connect() as conn:
            for chunk in chunks:
                rows += conn.execute(base if chunk is None else base.where(c.user_id.in_(chunk))).all()
        if not rows:
            return []
        mat = np.stack([np.frombuffer(r.vector, dtype=np.float32, count=r.dim) for r in rows])
        mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
        scores = mat @ (q / max(float(np.linalg.norm(q)), 1e-12))
        top = np.argsort(-scores, kind="stable")[:k]
        return [Neighbor(rows[i].user_id, rows[i].doc_id, float(scores[i])) for i in top]

    def _hnsw(self, model: str, q: np.ndarray, k: int, users: Sequence[str] | None) -> list[Neighbor]:
        sql = text(search_sql(table_name(model), filtered=users is not None))
        params: dict[str, Any] = {"q": _literal(q), "k": k}
        if users is not None:
            params["users"] = list(users)
        with self.engine.begin() as conn:
            # pgvector returns at most ef_search rows, so never fewer candidates than k.
            ef = min(max(int(self.ef_search), k), _MAX_EF_SEARCH)
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {ef}"))
            if users is not None and self._version is not None and self._version >= (0, 8):
                # A filter drops candidates after the graph walk; keep walking until k survive.
                conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            rows = conn.execute(sql, params).all()
        return [Neighbor(r.user_id, r.doc_id, float(r.score)) for r in rows]

    def _sync(self, model: str, dim: int) -> None:
        """Create the side table and its HNSW index on first use; copy rows it lacks."""
        if model in self._synced:
            return
        name = table_name(model)
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(model)})
            fresh = conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None
            if fresh:
                conn.execute(
                    text(
                        f"CREATE TABLE {name} (user_id varchar(256) NOT NULL, model varchar(256) NOT NULL, "
                        f"doc_id varchar(256) NOT NULL, text_hash varchar(16) NOT NULL, "
                        f"embedding vector({int(dim)}) NOT NULL, PRIMARY KEY (user_id, model, doc_id), "
                        "FOREIGN KEY (user_id, model, doc_id) REFERENCES embeddings (user_id, model, doc_id) "
                        "ON DELETE CASCADE)"
                    )
                )
            _backfill(conn, name, model)
            if fresh:  # building the graph once after the bulk copy is far faster than row by row
                conn.execute(text("SELECT set_config('maintenance_work_mem', :v, true)"), {"v": self.build_memory})
                conn.execute(
                    text(
                        f"CREATE INDEX {name}_hnsw ON {name} USING hnsw (embedding vector_cosine_ops) "
                        f"WITH (m = {int(self.m)}, ef_construction = {int(self.ef_construction)})"
                    )
                )
        self._synced.add(model)


def search_sql(name: str, *, filtered: bool) -> str:
    """The k-NN query the HNSW index answers (cosine distance ``<=>``; score = 1 - distance)."""
    where = "WHERE user_id = ANY(:users) " if filtered else ""
    return (
        f"SELECT user_id, doc_id, 1 - (embedding <=> CAST(:q AS vector)) AS score FROM {name} "
        f"{where}ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k"
    )


def _ensure_extension(engine: Engine) -> tuple[int, ...]:
    """pgvector's version in this database, creating the extension if the server ships it; () if none."""
    installed = text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    try:
        with engine.begin() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first():
                return ()
            if conn.execute(installed).scalar() is None:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            version = str(conn.execute(installed).scalar())
    except DBAPIError:  # e.g. no privilege to create extensions: exact search still works
        return ()
    return tuple(int(p) for p in version.split(".") if p.isdigit()) or (0,)


def _backfill(conn: Connection, name: str, model: str) -> None:
    """Copy ``embeddings`` rows missing from the side table, or changed since (text hash)."""
    missing = conn.execute(
        text(
            f"SELECT e.user_id, e.doc_id, e.text_hash, e.vector, e.dim FROM embeddings e "
            f"LEFT JOIN {name} v ON v.user_id = e.user_id AND v.model = e.model AND v.doc_id = e.doc_id "
            "WHERE e.model = :m AND (v.doc_id IS NULL OR v.text_hash <> e.text_hash)"
        ),
        {"m": model},
    ).all()
    rows = [
        {
            "user_id": r.user_id,
            "model": model,
            "doc_id": r.doc_id,
            "text_hash": r.text_hash,
            "vector": bytes(r.vector),
            "dim": r.dim,
        }
        for r in missing
    ]
    _insert(conn, name, rows)


def _insert(conn: Connection, name: str, rows: Sequence[dict[str, Any]]) -> None:
    sql = text(
        f"INSERT INTO {name} (user_id, model, doc_id, text_hash, embedding) "
        "VALUES (:user_id, :model, :doc_id, :text_hash, CAST(:embedding AS vector)) "
        "ON CONFLICT (user_id, model, doc_id) DO UPDATE "
        "SET text_hash = EXCLUDED.text_hash, embedding = EXCLUDED.embedding"
    )
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        params = [
            {
                "user_id": r["user_id"],
                "model": r["model"],
                "doc_id": r["doc_id"],
                "text_hash": r["text_hash"],
                "embedding": _literal(np.frombuffer(r["vector"], dtype=np.float32, count=r["dim"])),
            }
            for r in batch
        ]
        conn.execute(sql, params)
