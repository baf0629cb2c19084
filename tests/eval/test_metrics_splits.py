"""Metrics against hand-computed values; splits without user or time leakage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tailorlm.data import Store, TaskExample
from tailorlm.eval import classification_scores, generation_scores, make_split, rating_scores


def test_rating_scores_by_hand() -> None:
    """golds 5,4,1; predictions 4, unparsable, 1. Unparsable vs gold 4 -> farthest label 1 (error 3).
    errors 1, 3, 0: MAE 4/3; RMSE sqrt((1 + 9 + 0) / 3) = sqrt(10/3)."""
    s = rating_scores(["4", None, "1"], [5, 4, 1])
    assert s["mae"] == pytest.approx(4 / 3)
    assert s["rmse"] == pytest.approx(math.sqrt(10 / 3))
    assert s["unparsable"] == pytest.approx(1 / 3)


def test_rouge_by_hand() -> None:
    """'great strings' vs 'great guitar strings': ROUGE-1 P=2/2, R=2/3, F=0.8; LCS=2 so ROUGE-L F=0.8 too."""
    s = generation_scores(["great strings"], ["great guitar strings"])
    assert s["rouge1"] == pytest.approx(0.8)
    assert s["rougeL"] == pytest.approx(0.8)
    assert generation_scores(["x"], ["x"])["rouge1"] == pytest.approx(1.0)


def test_classification_by_hand() -> None:
    """golds a,a,b,b; preds a,b,b,None -> accuracy 2/4; F1(a)=2*1*.5/1.5=2/3, F1(b)=2*.5*.5/1=.5; macro 7/12."""
    s = classification_scores(["a", "b", "b", None], ["a", "a", "b", "b"])
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["macro_f1"] == pytest.approx(7 / 12)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    s.add(
        TaskExample(task="t", example_id=f"{u}-{i}", user_id=u, input=f"x{i}", target="5", timestamp=100 * i)
        for u in [f"u{j}" for j in range(20)]
        for i in range(4)
    )
    return s


def test_user_split_holds_out_users_and_queries_their_latest_item(store: Store) -> None:
    split, queries = make_split(store, "t", kind="user", n_users=5, seed=3)
    held = {u for u, _ in split.queries}
    assert len(held) == 5 and not held & set(split.population)  # no user leakage
    assert len(split.population) == 15
    for (u, _), ex in queries.items():
        assert ex.user_id == u and ex.timestamp == 300  # the latest of that user
    again, _ = make_split(store, "t", kind="user", n_users=5, seed=3)
    assert again == split  # deterministic by seed
    other, _ = make_split(store, "t", kind="user", n_users=5, seed=4)
    assert other.queries != split.queries


def test_time_split_keeps_everyone_in_the_population(store: Store) -> None:
    split, _ = make_split(store, "t", kind="time", n_users=5, seed=0)
    assert len(split.population) == 20


def test_split_errors_are_clear(store: Store) -> None:
    with pytest.raises(ValueError, match="no examples of task 'nope'"):
        make_split(store, "nope")
    with pytest.raises(ValueError, match="more than 10 examples"):
        make_split(store, "t", min_history=10)


def test_user_samples_are_nested_across_sizes(store: Store) -> None:
    small, _ = make_split(store, "t", kind="user", n_users=5, seed=7)
    large, _ = make_split(store, "t", kind="user", n_users=10, seed=7)
    assert set(small.queries) < set(large.queries)  # rows of different sizes pair on common queries


def test_several_queries_per_user_are_their_latest_each_leaving_history(store: Store) -> None:
    one, _ = make_split(store, "t", kind="user", n_users=5, seed=3)
    split, queries = make_split(store, "t", kind="user", n_users=5, seed=3, queries_per_user=3)
    assert {u for u, _ in split.queries} == {u for u, _ in one.queries}  # the same users
    assert split.population == one.population
    assert set(one.queries) < set(split.queries) and len(split.queries) == 15
    assert sorted({ex.timestamp for ex in queries.values()}) == [100, 200, 300]  # never the first: no history
    capped, _ = make_split(store, "t", kind="user", n_users=5, seed=3, queries_per_user=10)
    assert len(capped.queries) == 15  # 4 examples each: at most 3 keep an earlier one
    with pytest.raises(ValueError, match="queries_per_user must be >= 1"):
        make_split(store, "t", queries_per_user=0)


def test_several_queries_of_undated_users_are_distinct_and_seeded(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'u.db'}")
    s.add(
        TaskExample(task="t", example_id=f"{u}-{i}", user_id=u, input=f"x{i}", target="1")
        for u in ("a", "b", "c", "d")
        for i in range(6)
    )
    split, queries = make_split(s, "t", kind="user", n_users=2, seed=1, queries_per_user=4)
    again, _ = make_split(s, "t", kind="user", n_users=2, seed=1, queries_per_user=4)
    assert again == split and len(split.queries) == 8 == len(set(split.queries))
    for u in {u for u, _ in split.queries}:
        assert sum(q[0] == u for q in split.queries) == 4
    assert all(ex.user_id == u and ex.example_id == e for (u, e), ex in queries.items())
