"""LaMP's protocol in the harness: one question per user, its own profile, the dataset's own split."""

from __future__ import annotations

import pytest

from tailorlm.data import Document, Store, TaskExample
from tailorlm.eval import run_method
from tailorlm.eval.splits import make_split
from tailorlm.personalize.base import eligible_history
from tailorlm.personalize.types import Query

Q3 = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
    "or 5 without further explanation. review: "
)


def _question(
    store_recs: list, uid: str, qid: str, split: str | None, target: str, profile: list[tuple[str, str, int]]
) -> None:
    """A LaMP-3 question of ``uid`` with profile items (id, text, score)."""
    for pid, text, score in profile:
        store_recs.append(Document(user_id=uid, doc_id=pid, doc_kind="review", text=text, rating=score))
    meta = {"profile_ids": [p[0] for p in profile]} | ({"split": split} if split else {})
    store_recs.append(
        TaskExample(
            task="lamp-3", example_id=qid, user_id=uid, input=Q3 + f"question {qid}", target=target, metadata=meta
        )
    )


@pytest.fixture
def lamp_store() -> Store:
    """20 train and 6 dev questions, each its own user with a two-item profile (LaMP user-based)."""
    store = Store("sqlite://")
    recs: list = []
    for i in range(26):
        split = "train" if i < 20 else "dev"
        score = 1 + i % 5
        _question(
            recs, f"q{i}", f"{i}", split, str(score), [(f"{i}-a", f"fine strings {i}", score), (f"{i}-b", "A+", score)]
        )
    store.add(recs)
    return store


def test_one_question_per_user_can_be_split_by_user() -> None:
    store = Store("sqlite://")
    recs: list = []
    for i in range(10):
        _question(recs, f"q{i}", f"{i}", None, "5", [(f"{i}-a", "good", 5)])
    store.add(recs)
    split, queries = make_split(store, "lamp-3", kind="auto", n_users=4, seed=0)
    assert split.kind == "user"
    assert len(queries) == 4 and len(split.population) == 6
    assert not set(split.population) & {u for u, _ in split.queries}


def test_given_split_uses_train_as_population_and_dev_as_queries(lamp_store: Store) -> None:
    split, queries = make_split(lamp_store, "lamp-3", n_users=100, seed=0)
    assert split.kind == "given"
    assert split.population == tuple(sorted(f"q{i}" for i in range(20)))
    assert sorted(ex.example_id for ex in queries.values()) == sorted(str(i) for i in range(20, 26))
    small, _ = make_split(lamp_store, "lamp-3", n_users=3, seed=0)
    assert set(small.queries) <= set(split.queries)  # nested samples


def test_too_many_users_for_a_user_split_is_a_clear_error(lamp_store: Store) -> None:
    with pytest.raises(ValueError, match="leaving no population"):
        make_split(lamp_store, "lamp-3", kind="user", n_users=1000, seed=0)


def test_a_query_sees_exactly_its_own_profile() -> None:
    """Two questions of one user (LaMP's time-based layout with user ids): neither sees the other's profile."""
    store = Store("sqlite://")
    recs: list = []
    _question(recs, "alice", "1", "train", "4", [("p1", "warm tone strings", 4), ("p2", "bright pick", 5)])
    _question(recs, "alice", "2", "dev", "2", [("p1", "warm tone strings", 4), ("p3", "the target of q1 as text", 4)])
    store.add(recs)
    by_id = {ex.example_id: ex for ex in store.get_examples(task="lamp-3")}
    seen = {
        qid: {e.source_id for e in eligible_history(store, "alice", Query.from_example(ex))}
        for qid, ex in by_id.items()
    }
    assert seen == {"1": {"p1", "p2"}, "2": {"p1", "p3"}}


def test_baselines_never_learn_a_query_label() -> None:
    """A user who is in the population (train question) and a query (dev question): only train labels count."""
    store = Store("sqlite://")
    recs: list = []
    for i in range(5):
        _question(recs, f"u{i}", f"t{i}", "train", "1", [(f"t{i}-p", "ok", 1)])
        _question(recs, f"u{i}", f"d{i}", "dev", "5", [(f"d{i}-p", "ok", 5)])
    store.add(recs)
    res = run_method(store, method="identity", task="lamp-3", predictor="majority", n_users=5)
    assert {r["answer"] for r in res.rows} == {"1"}  # the dev targets (all 5) never reached the majority


def test_rag_on_lamp_retrieves_only_the_profile_and_survives_empty_vocabulary(lamp_store: Store) -> None:
    res = run_method(lamp_store, method="rag-bm25", task="lamp-3", predictor="retrieval-vote", n_users=6, k=2)
    assert res.split["kind"] == "given" and len(res.rows) == 6
    for row in res.rows:
        qid = row["example_id"]
        assert set(row["retrieved"]) <= {f"doc:{qid}-a", f"doc:{qid}-b"}
        assert row["answer"] == row["gold"]  # the profile's own score, shown in the history line
    assert res.metrics["mae"] == 0.0


def test_history_lines_use_the_lamp_profile_format(lamp_store: Store) -> None:
    from tailorlm.personalize import parse_method_spec

    rag = parse_method_spec("rag-bm25", collaborators={}, overrides={"rag-bm25": {"k": 2}}).fit(lamp_store)
    ex = next(e for e in lamp_store.get_examples(task="lamp-3") if e.example_id == "21")
    system = rag.personalize(ex.user_id, Query.from_example(ex)).messages[0]["content"]
    assert '2 is the score for "fine strings 21"' in system
    assert "-> 2" not in system  # the label is inside the line, not appended twice


def test_global_text_baseline_reads_the_input_and_learns_only_from_train() -> None:
    """A text classifier on the population's inputs: words that go with a score in train predict it on dev."""
    store = Store("sqlite://")
    recs: list = []
    words = {1: "broken awful junk", 3: "okay average fine", 5: "superb perfect love"}
    for i in range(30):
        score = (1, 3, 5)[i % 3]
        split = "train" if i < 24 else "dev"
        recs.append(
            TaskExample(task="lamp-3", example_id=str(i), user_id=f"q{i}", input=Q3 + f"{words[score]} item {i}",
                        target=str(score), metadata={"profile_ids": [], "split": split})
        )  # fmt: skip
    store.add(recs)
    res = run_method(store, method="identity", task="lamp-3", predictor="global-text", n_users=6)
    assert [r["answer"] for r in res.rows] == [r["gold"] for r in res.rows]
    assert res.metrics["mae"] == 0.0


def test_macro_f1_counts_every_label_of_the_task() -> None:
    from tailorlm.eval.metrics import classification_scores

    golds, preds = ["comedy", "comedy"], ["comedy", "action"]
    assert classification_scores(preds, golds)["macro_f1"] == pytest.approx(2 / 3)  # only 'comedy' counted
    # over the question's label set (as LaMP's evaluation does), 'action' and 'romance' count with F1 0
    assert classification_scores(preds, golds, labels=["comedy", "action", "romance"])["macro_f1"] == pytest.approx(
        2 / 9
    )
