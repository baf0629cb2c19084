"""Validation users: disjoint from test users, deterministic, and what heads and the gain table choose on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tailorlm.data import Document, Store, TaskExample, User
from tailorlm.eval.report import write_reports
from tailorlm.eval.runner import run_method
from tailorlm.eval.selection import fit_head, validation_examples
from tailorlm.eval.splits import make_split
from tailorlm.eval.suite import SuiteConfig, SuiteEnv, run_suite
from tailorlm.tasks import get_task
from tailorlm.tasks.heads import UserOffsetHead

WORDS = [
    "warm tone",
    "bright strings",
    "sturdy stand",
    "quiet pedal",
    "loud amp",
    "soft pick",
    "thin neck",
    "cheap case",
]


def _rating_store(path: Path, *, users: int = 40, bias: bool = True) -> Store:
    """``users`` raters of 8 items, 6 dated reviews each. Item i has quality 1 + i % 4;
    with ``bias``, even users rate one star above it and odd users one below (clipped)."""
    store = Store(f"sqlite:///{path}")
    recs: list = []
    for u in range(users):
        uid = f"u{u:02d}"
        recs.append(User(user_id=uid))
        shift = (1 if u % 2 == 0 else -1) if bias else 0
        for k in range(6):
            i = (u + k) % len(WORDS)
            rating = min(5, max(1, 2 + i % 4 + shift))
            doc_id, text = f"{uid}-{k}", f"the {WORDS[i]} is what it is"
            recs.append(Document(user_id=uid, doc_id=doc_id, doc_kind="review", text=text, rating=rating,
                                 item_id=f"item{i}", timestamp=1000 + k))  # fmt: skip
            recs.append(TaskExample(task="amazon-rating", example_id=doc_id, user_id=uid, input=text,
                                    target=str(rating), timestamp=1000 + k, doc_id=doc_id,
                                    metadata={"item_id": f"item{i}"}))  # fmt: skip
    store.add(recs)
    return store


@pytest.mark.parametrize("kind", ["user", "time"])
def test_validation_users_never_meet_any_test_sample(tmp_path: Path, kind: str) -> None:
    store = _rating_store(tmp_path / "s.db")
    val, _ = make_split(store, "amazon-rating", kind=kind, n_users=10, seed=3, role="validation", reserve=20)
    again, _ = make_split(store, "amazon-rating", kind=kind, n_users=10, seed=3, role="validation", reserve=20)
    # at most a third of the 20 users left after the reserve: the validation population stays >= twice the sample
    assert val == again and len(val.queries) == 6
    validation_users = {u for u, _ in val.queries}
    for n in (1, 5, 20):  # every test sample up to the reserve
        test, _ = make_split(store, "amazon-rating", kind=kind, n_users=n, seed=3)
        test_users = {u for u, _ in test.queries}
        assert not test_users & validation_users
        assert not test_users & set(val.population)  # nothing a validation row fits on is a test user's
    if kind == "user":
        assert not validation_users & set(val.population)
    smaller, _ = make_split(store, "amazon-rating", kind=kind, n_users=4, seed=3, role="validation", reserve=20)
    assert set(smaller.queries) <= set(val.queries)  # nested, as test samples are
    with pytest.raises(ValueError, match="no user is left for validation"):
        make_split(store, "amazon-rating", kind=kind, n_users=5, seed=3, role="validation", reserve=40)


def test_inner_validation_is_deterministic_and_holds_out_whole_users(tmp_path: Path) -> None:
    store = _rating_store(tmp_path / "s.db")
    examples = store.get_examples(task="amazon-rating")
    fit, queries = validation_examples(examples, seed=1)
    assert (fit, queries) == validation_examples(examples, seed=1)
    assert queries != validation_examples(examples, seed=2)[1]
    held = {ex.user_id for ex in queries}
    assert len(held) == len(queries) == 8 and not held & {ex.user_id for ex in fit}
    assert all(q.timestamp == 1005 for q in queries)  # each held-out user's latest


@pytest.mark.parametrize("bias", [True, False])
def test_the_offset_strength_is_chosen_on_validation_users(tmp_path: Path, bias: bool) -> None:
    store = _rating_store(tmp_path / "s.db", bias=bias)
    result = run_method(store, method="identity", task="amazon-rating", n_users=10, seed=0, predictor="user-offset")
    chosen = result.chosen
    assert chosen["validation_n"] > 0 and set(chosen["params"]) == {"alpha", "m", "decision"}
    if bias:  # users differ by two stars: the offset must be used, and it pays on test users
        assert chosen["params"]["alpha"] != "inf"
        plain = run_method(store, method="identity", task="amazon-rating", n_users=10, seed=0, predictor="item-mean")
        assert result.metrics["mae"] < plain.metrics["mae"]
    else:  # nobody departs from the crowd: no offset setting does better than none (ties keep inf)
        assert chosen["params"]["alpha"] == "inf"
    again = run_method(store, method="identity", task="amazon-rating", n_users=10, seed=0, predictor="user-offset")
    assert again.chosen == chosen and again.metrics == result.metrics


def test_fit_head_never_sees_test_users(tmp_path: Path) -> None:
    store = _rating_store(tmp_path / "s.db")
    test, _ = make_split(store, "amazon-rating", kind="user", n_users=10, seed=0)
    population = [ex for ex in store.get_examples(task="amazon-rating") if ex.user_id in set(test.population)]
    seen: list[str] = []

    def history_of(ex: TaskExample) -> list:
        seen.append(ex.user_id)
        return []

    head, _ = fit_head(UserOffsetHead(), get_task("amazon-rating"), population, history_of, seed=0)
    test_users = {u for u, _ in test.queries}
    assert seen and not set(seen) & test_users
    assert not {u for (_, u) in head.scorer_.item_user_} & test_users


def test_a_suite_with_validation_users_writes_the_gain_table(tmp_path: Path) -> None:
    store = _rating_store(tmp_path / "s.db")
    suite = SuiteConfig.from_dict(
        {
            "name": "v",
            "meteor": False,
            "validation_users": 8,
            "rows": [
                {"task": "amazon-rating", "method": "identity", "predictor": "majority", "users": 12, "baseline": True},
                {
                    "task": "amazon-rating",
                    "method": "identity",
                    "predictors": ["item-mean", "user-offset"],
                    "users": 12,
                },
            ],
        }
    )
    assert [r.predictor for r in suite.rows] == ["majority", "item-mean", "user-offset"]
    report = run_suite(suite, out_dir=tmp_path / "out", env=SuiteEnv(store), log=lambda _: None)
    rows = report["results"]
    assert [r["personalized"] for r in rows] == [False, False, True]
    for r in rows:
        assert r["validation"]["n"] == 8 and "mae" in r["validation"]["metrics"]
        val_users = {u for u, _ in make_split(store, "amazon-rating", kind="user", n_users=8, seed=0,
                                              role="validation", reserve=12)[0].queries}  # fmt: skip
        assert not val_users & {q["user_id"] for q in r["rows"]}
    files = write_reports(report, tmp_path / "out")
    gains = json.loads(files["gains"].read_text())["tasks"]["amazon-rating"]
    assert gains["chosen_on"] == "validation" and gains["best"]["row"] == "identity / user-offset"
    assert gains["baseline"]["row"] in ("identity / item-mean", "identity / majority")
    assert gains["n"] == 12 and gains["lower_is_better"] is True


def test_given_split_validation_uses_train_questions_and_leaves_dev_unseen(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    recs: list = []
    for u in range(30):
        uid, split = f"g{u:02d}", ("train" if u < 20 else "dev")
        recs += [
            User(user_id=uid),
            Document(user_id=uid, doc_id=f"{uid}-p", doc_kind="review", text="a fine amp", rating=4),
        ]
        recs.append(TaskExample(task="lamp-3", example_id=f"q{u}", user_id=uid, input="Review: ok", target="4",
                                metadata={"split": split, "profile_ids": [f"{uid}-p"]}))  # fmt: skip
    store.add(recs)
    val, queries = make_split(store, "lamp-3", n_users=5, seed=0, role="validation", reserve=10)
    assert val.kind == "given" and len(queries) == 5
    assert all(ex.metadata["split"] == "train" for ex in queries.values())
    assert not {u for u, _ in val.queries} & set(val.population)
    assert all(int(u[1:]) < 20 for u in val.population)  # dev users are never fitted on


def test_shared_adapters_never_learn_from_validation_or_test_users(tmp_path: Path) -> None:
    from tailorlm.eval.training import plan_jobs

    store = _rating_store(tmp_path / "s.db")
    rows = [{"task": "amazon-rating", "method": "lora-global", "predictor": "choice", "users": 10, "baseline": True}]
    train = [{"method": "lora", "scope": "global", "task": "amazon-rating", "config": {"steps": 1}}]
    without = SuiteConfig.from_dict({"name": "a", "rows": rows, "train": train})
    with_val = SuiteConfig.from_dict({"name": "b", "rows": rows, "train": train, "validation_users": 6})
    _, plain = plan_jobs(without, store)
    _, guarded = plan_jobs(with_val, store)
    val, _ = make_split(store, "amazon-rating", kind="user", n_users=6, seed=0, role="validation", reserve=10)
    test, _ = make_split(store, "amazon-rating", kind="user", n_users=10, seed=0)
    validation_users = {u for u, _ in val.queries}
    assert validation_users <= set(plain["amazon-rating"])  # what the guard removes
    assert not validation_users & set(guarded["amazon-rating"])
    assert not {u for u, _ in test.queries} & set(guarded["amazon-rating"])
    assert set(guarded["amazon-rating"]) == set(plain["amazon-rating"]) - validation_users


def test_user_adapters_are_trained_for_the_validation_users_rows_run_on(tmp_path: Path) -> None:
    """A user-scope [[train]] entry trains the rows' validation users too (each on their own
    reviews strictly before their validation query), so variants can be chosen on them."""
    from tailorlm.eval.training import plan_jobs

    store = _rating_store(tmp_path / "s.db")
    rows = [{"task": "amazon-rating", "method": "lora", "predictor": "choice", "users": 8}]
    train = [{"method": "lora", "scope": "user", "task": "amazon-rating", "users": 8, "config": {"steps": 1}}]
    plain = SuiteConfig.from_dict({"name": "a", "rows": rows, "train": train})
    validated = SuiteConfig.from_dict({"name": "b", "rows": rows, "train": train, "validation_users": 5})
    test, test_q = make_split(store, "amazon-rating", kind="user", n_users=8, seed=0)
    val, val_q = make_split(store, "amazon-rating", kind="user", n_users=5, seed=0, role="validation", reserve=8)
    jobs, _ = plan_jobs(plain, store)
    assert {j.owner for j in jobs} == {u for u, _ in test.queries}
    jobs, _ = plan_jobs(validated, store)
    assert {j.owner for j in jobs} == {u for u, _ in test.queries} | {u for u, _ in val.queries}
    cut = {u: ex.timestamp for (u, _), ex in (test_q | val_q).items()}
    assert all(j.config["before"] == cut[j.owner] for j in jobs)  # never the query, never after it
