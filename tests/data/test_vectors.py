"""The store's nearest-neighbour search: pgvector HNSW vs exact, user filtering, the SQLite fallback.

The pgvector tests use the ``pgvector_url`` fixture (conftest): they skip with the reason
where no pgvector-capable PostgreSQL can be started, and fail instead under
``TAILORLM_REQUIRE_PGVECTOR=1`` (CI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from tailorlm.data import Store
from tailorlm.data._vectors import _literal, search_sql, table_name

MODEL = "test-embedder"


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fill(store: Store, vecs: np.ndarray, n_users: int) -> None:
    """Vector i belongs to user u{i % n_users} as document d{i}."""
    for u in range(n_users):
        idx = np.arange(u, len(vecs), n_users)
        store.put_embeddings(
            user_id=f"u{u}", model=MODEL, version="1", doc_ids=[f"d{i}" for i in idx], vectors=vecs[idx]
        )


@pytest.fixture
def pgv_store(pgvector_url: str, tmp_path: Path):
    s = Store(pgvector_url, files_dir=tmp_path / "files")
    assert s.ann.available, "the pgvector server must make the index available"
    yield s
    s.close()


def test_ann_equals_exact_on_a_small_set(pgv_store: Store) -> None:
    rng = np.random.default_rng(0)
    vecs = _unit(rng, 200, 16)
    _fill(pgv_store, vecs, n_users=4)
    for q in _unit(rng, 10, 16):
        ann = pgv_store.nearest(MODEL, q, 5)
        exact = pgv_store.nearest(MODEL, q, 5, exact=True)
        assert [(n.user_id, n.doc_id) for n in ann] == [(n.user_id, n.doc_id) for n in exact]
        assert [n.score for n in ann] == pytest.approx([n.score for n in exact], abs=1e-5)


def test_ann_recall_at_10_on_5k_vectors(pgv_store: Store) -> None:
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 5000, 64)
    _fill(pgv_store, vecs, n_users=50)
    hits = 0
    queries = _unit(rng, 50, 64)
    for q in queries:
        ann = {n.doc_id for n in pgv_store.nearest(MODEL, q, 10)}
        exact = {n.doc_id for n in pgv_store.nearest(MODEL, q, 10, exact=True)}
        hits += len(ann & exact)
    assert hits / (10 * len(queries)) >= 0.95
    with pgv_store.engine.connect() as conn:
        plan = conn.execute(
            text("EXPLAIN " + search_sql(table_name(MODEL), filtered=False)), {"q": _literal(queries[0]), "k": 10}
        ).all()
    assert "hnsw" in " ".join(r[0] for r in plan), plan  # the index answered, not a sequential scan


def test_users_filter_never_returns_another_users_vector(pgv_store: Store) -> None:
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 1000, 16)
    _fill(pgv_store, vecs, n_users=20)
    for q in _unit(rng, 10, 16):
        got = pgv_store.nearest(MODEL, q, 10, users=["u3", "u7"])
        assert len(got) == 10  # the iterative scan keeps walking until k survive the filter
        assert {n.user_id for n in got} <= {"u3", "u7"}
        exact = pgv_store.nearest(MODEL, q, 10, users=["u3", "u7"], exact=True)
        assert {n.doc_id for n in got} == {n.doc_id for n in exact}
    assert pgv_store.nearest(MODEL, vecs[0], 5, users=[]) == []


def test_index_follows_writes_and_deletions(pgv_store: Store) -> None:
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 40, 8)
    _fill(pgv_store, vecs[:20], n_users=2)  # before the side table exists: backfilled on first search
    assert pgv_store.nearest(MODEL, vecs[0], 1)[0].doc_id == "d0"
    pgv_store.put_embeddings(user_id="u9", model=MODEL, version="1", doc_ids=["late"], vectors=vecs[30:31])
    assert pgv_store.nearest(MODEL, vecs[30], 1)[0].doc_id == "late"  # written through, same transaction
    pgv_store.delete_user(user_id="u9")
    assert all(n.user_id != "u9" for n in pgv_store.nearest(MODEL, vecs[30], 20))
    with pgv_store.engine.connect() as conn:
        left = conn.execute(text(f"SELECT count(*) FROM {table_name(MODEL)} WHERE user_id = 'u9'")).scalar()
    assert left == 0  # the side table's rows cascade from embeddings


def test_a_second_store_backfills_rows_written_without_the_index(pgvector_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vecs = _unit(rng, 30, 8)
    first = Store(pgvector_url, files_dir=tmp_path / "f")
    first.ann.enabled = False  # a writer that does not maintain the index (an older tailorlm)
    _fill(first, vecs[:10], n_users=1)
    second = Store(pgvector_url, files_dir=tmp_path / "f")
    assert second.nearest(MODEL, vecs[3], 1)[0].doc_id == "d3"
    _fill(first, vecs, n_users=1)  # the table exists now, but this writer skips it
    third = Store(pgvector_url, files_dir=tmp_path / "f")
    assert third.nearest(MODEL, vecs[25], 1)[0].doc_id == "d25"  # first search per process syncs
    first.close(), second.close(), third.close()


def test_sqlite_falls_back_to_exact(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    assert not store.ann.available
    rng = np.random.default_rng(5)
    vecs = _unit(rng, 300, 12)
    _fill(store, vecs, n_users=3)
    q = _unit(rng, 1, 12)[0]
    got = store.nearest(MODEL, q, 7)
    brute = np.argsort(-(vecs @ q), kind="stable")[:7]
    assert [n.doc_id for n in got] == [f"d{i}" for i in brute]
    assert [n.score for n in got] == pytest.approx([float(vecs[i] @ q) for i in brute], abs=1e-5)
    only = store.nearest(MODEL, q, 50, users=["u1"])
    assert len(only) == 50 and {n.user_id for n in only} == {"u1"}
    assert store.nearest("unknown-model", q, 3) == []
    with pytest.raises(ValueError, match="dimension"):
        store.nearest(MODEL, np.ones(5, dtype=np.float32), 3)


def test_postgres_without_pgvector_falls_back_to_exact(pg_url: str, tmp_path: Path) -> None:
    store = Store(pg_url, files_dir=tmp_path / "files")
    rng = np.random.default_rng(6)
    vecs = _unit(rng, 50, 8)
    _fill(store, vecs, n_users=2)
    q = vecs[7]
    assert store.nearest(MODEL, q, 1)[0].doc_id == "d7"
    if store.ann.available:  # a server with pgvector installed: the index answered
        assert store.nearest(MODEL, q, 3) == store.nearest(MODEL, q, 3, exact=True)
    store.close()
