"""Pooled (cross-user) dense retrieval through the store's ANN index, and when it is not used.

The pgvector half uses the ``pgvector_url`` fixture (conftest): skipped with the reason
without a pgvector-capable server, a failure under ``TAILORLM_REQUIRE_PGVECTOR=1`` (CI).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tailorlm.data import Store
from tailorlm.retrieval import DenseRanker, HistoryEntry


class SeededEmbedder:
    """A fixed random unit vector per text (seeded by its digest): no model, stable across runs."""

    name, dim, version = "seeded-32", 32, "1"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.stack(
            [
                np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)).standard_normal(self.dim)
                for t in texts
            ]
        ).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _pool(n_users: int, per_user: int) -> list[HistoryEntry]:
    return [
        HistoryEntry(entry_id=f"doc:{u}-{i}", user_id=f"u{u}", text=f"review {i} by user {u}", kind="review")
        for u in range(n_users)
        for i in range(per_user)
    ]


class Spy:
    """Wraps ``Store.nearest`` to count calls."""

    def __init__(self, store: Store) -> None:
        self.calls = 0
        self._inner = store.nearest

        def nearest(*args, **kwargs):
            self.calls += 1
            return self._inner(*args, **kwargs)

        store.nearest = nearest  # type: ignore[method-assign]


def _keys(hits) -> list[tuple[str, str]]:
    return [(h.entry.user_id, h.entry.entry_id) for h in hits]


def test_pooled_ranking_uses_the_index_and_matches_exact(pgvector_url: str, tmp_path: Path) -> None:
    store = Store(pgvector_url, files_dir=tmp_path / "files")
    assert store.ann.available
    pool = _pool(n_users=12, per_user=25)
    ranker = DenseRanker(SeededEmbedder(), store=store, ann_min_entries=100)
    exact = DenseRanker(SeededEmbedder())  # no store: always exact, in memory
    spy = Spy(store)
    for query in ["review 3 by user 4", "something else", "review 17 by user 0"]:
        got = ranker.rank(pool, query=query, k=5)
        assert _keys(got) == _keys(exact.rank(pool, query=query, k=5))
        assert [h.score for h in got] == pytest.approx([h.score for h in exact.rank(pool, query=query, k=5)], abs=1e-5)
    assert spy.calls == 3
    # A sub-pool (one persona's members, an earlier cut-off): hits outside it never come back.
    sub = [e for e in pool if e.user_id in {"u1", "u2"} and not e.entry_id.endswith("-3")]
    sub += _pool(n_users=1, per_user=100)  # u0, so the list spans users and is long enough
    got = ranker.rank(sub, query="review 3 by user 1", k=8)
    allowed = {(e.user_id, e.entry_id) for e in sub}
    assert set(_keys(got)) <= allowed
    assert _keys(got) == _keys(exact.rank(sub, query="review 3 by user 1", k=8))
    store.close()


def test_one_users_entries_and_short_pools_stay_exact(pgvector_url: str, tmp_path: Path) -> None:
    store = Store(pgvector_url, files_dir=tmp_path / "files")
    spy = Spy(store)
    ranker = DenseRanker(SeededEmbedder(), store=store, ann_min_entries=100)
    ranker.rank(_pool(n_users=1, per_user=150), query="review 1", k=3)  # one user: exact
    ranker.rank(_pool(n_users=3, per_user=10), query="review 1", k=3)  # below ann_min_entries
    assert spy.calls == 0
    store.close()


def test_sqlite_pools_are_scored_exactly(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    spy = Spy(store)
    pool = _pool(n_users=5, per_user=40)
    got = DenseRanker(SeededEmbedder(), store=store, ann_min_entries=10).rank(pool, query="review 2 by user 3", k=4)
    assert spy.calls == 0
    assert _keys(got) == _keys(DenseRanker(SeededEmbedder()).rank(pool, query="review 2 by user 3", k=4))
    store.close()
