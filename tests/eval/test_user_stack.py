"""The learned user head (user-stack): it learns from population histories when users depart
from the global model, says so on validation users, and never trains on test users or on
anything at or after a training query."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_validation import _rating_store

from tailorlm.data import TaskExample
from tailorlm.eval.runner import run_method
from tailorlm.eval.selection import fit_head, training_queries
from tailorlm.eval.splits import example_order, make_split
from tailorlm.tasks import get_task
from tailorlm.tasks.heads import Observation
from tailorlm.tasks.stack import UserStackHead

RATING = get_task("amazon-rating")
QUALITY = ["awful", "poor", "decent", "superb"]  # item i's quality is 2 + i % 4


def _population(users: int = 60) -> tuple[list[Observation], list[list[Observation] | None]]:
    """Each user rates 6 items whose quality (1 + i % 4) the text names; half of the users rate
    one star above it, half one below. Training queries: each user's last three ratings."""
    pop: list[Observation] = []
    hists: list[list[Observation] | None] = []
    for u in range(users):
        shift = 1 if u % 2 else -1
        own: list[Observation] = []
        for k in range(6):
            i = (u + k) % 8
            value = str(min(5, max(1, 2 + i % 4 + shift)))
            obs = Observation(f"a {QUALITY[i % 4]} product", value, f"u{u}", f"item{i}")
            pop.append(obs)
            hists.append(list(own) if k >= 3 else None)
            own.append(obs)
    return pop, hists


def test_the_stack_learns_a_users_departure_from_the_global_model() -> None:
    pop, hists = _population()
    head = UserStackHead().fit(RATING, pop, histories=hists)
    assert head.training_rows_ == 180
    q = Observation("a poor product", None, "new", "item1")  # quality 3: the crowd says 3
    kind = [Observation(f"a {w} product", str(min(5, 3 + j)), "new", f"item{j}") for j, w in enumerate(QUALITY)]
    harsh = [Observation(f"a {w} product", str(max(1, 1 + j)), "new", f"item{j}") for j, w in enumerate(QUALITY)]
    up, down = (float(head.predict(RATING, [q], [h], [()])[0].answer) for h in (kind, harsh))
    assert up - down >= 2  # the same input, two stars apart by the user's history
    plain = head.predict(RATING, [q, q], [kind, harsh], [(), ()], use="global")
    assert plain[0].answer == plain[1].answer  # use=global: the text model alone, no user at all


def test_without_histories_or_departures_the_stack_is_the_global_model() -> None:
    pop, _ = _population()
    head = UserStackHead().fit(RATING, pop)  # no training histories: nothing to learn from
    q = Observation("a decent product", None, "new", None)
    hist = [Observation("an awful product", "5", "new")]
    assert head.stack_ is None
    assert (
        head.predict(RATING, [q], [hist], [()])[0].answer
        == head.predict(RATING, [q], [[]], [()], use="global")[0].answer
    )


def test_training_rows_are_each_users_latest_and_bounded(tmp_path: Path) -> None:
    store = _rating_store(tmp_path / "s.db")
    examples = store.get_examples(task="amazon-rating")
    rows = training_queries(examples, seed=0, per_user=2)
    assert rows == training_queries(examples, seed=0, per_user=2)
    by_user: dict[str, list[TaskExample]] = {}
    for ex in examples:
        by_user.setdefault(ex.user_id, []).append(ex)
    latest = {ex.example_id for exs in by_user.values() for ex in sorted(exs, key=example_order)[-2:]}
    assert {examples[i].example_id for i in rows} == latest
    capped = training_queries(examples, seed=0, per_user=2, limit=10)
    assert len(capped) == 10 and capped <= rows
    assert capped != training_queries(examples, seed=1, per_user=2, limit=10)


def test_training_histories_are_strictly_earlier_and_never_a_test_users(tmp_path: Path) -> None:
    store = _rating_store(tmp_path / "s.db")
    test, _ = make_split(store, "amazon-rating", kind="user", n_users=10, seed=0)
    test_users = {u for u, _ in test.queries}
    population = [ex for ex in store.get_examples(task="amazon-rating") if ex.user_id in set(test.population)]
    asked: list[TaskExample] = []

    def history_of(ex: TaskExample) -> list[Observation]:
        asked.append(ex)
        return [Observation(e.input, e.target, e.user_id, e.metadata.get("item_id"))
                for e in population if e.user_id == ex.user_id and example_order(e) < example_order(ex)]  # fmt: skip

    head, chosen = fit_head(UserStackHead(), RATING, population, history_of, seed=0)
    assert asked and not {ex.user_id for ex in asked} & test_users
    assert set(chosen["params"]) == {"use"}
    assert head.stack_ is not None and head.training_rows_ > 0


@pytest.mark.parametrize("bias", [True, False])
def test_validation_users_decide_whether_the_stack_is_used(tmp_path: Path, bias: bool) -> None:
    store = _rating_store(tmp_path / "s.db", bias=bias)
    result = run_method(store, method="identity", task="amazon-rating", n_users=10, seed=0, predictor="user-stack")
    again = run_method(store, method="identity", task="amazon-rating", n_users=10, seed=0, predictor="user-stack")
    assert again.chosen == result.chosen and again.metrics == result.metrics
    plain = run_method(store, method="identity", task="amazon-rating", n_users=10, seed=0, predictor="global-text")
    if bias:  # users differ by two stars: the stack is chosen and pays on test users
        assert result.chosen["params"]["use"] == "stack"
        assert result.metrics["mae"] < plain.metrics["mae"]
    else:  # nobody departs from the text: the stack cannot beat it on validation users
        assert result.metrics["mae"] == pytest.approx(plain.metrics["mae"], abs=0.11)
        assert np.isfinite(result.metrics["mae"])
