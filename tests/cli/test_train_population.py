"""``tailorlm train`` learns only from the users ``tailorlm run`` does not evaluate.

The planning (:func:`population_for`, :func:`user_cut`) is tested directly, and the
commands through Typer's runner with the trainer step replaced by a recorder, so no
model is loaded: what is checked is who the job would learn from.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from tailorlm import Store, TaskExample, load_settings
from tailorlm.cli import app
from tailorlm.cli._training import population_for, user_cut
from tailorlm.cli.train import _per_job_population
from tailorlm.eval.splits import make_split
from tailorlm.personalize.training.jobs import TrainJob

runner = CliRunner()
TITLE_USERS = [f"u{i:02d}" for i in range(30)]  # 4 dated examples each, latest at 1003
OTHER_USERS = [f"a{i}" for i in range(5)]  # another dataset's users, alphabetically first
UNDATED_USERS = [f"p{i}" for i in range(6)]  # 5 undated examples each (POPQUORN-like)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The store the CLI opens (settings from the environment), with three tasks' examples."""
    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TAILORLM_STORE_URL", raising=False)
    s = Store.from_settings(load_settings())
    recs = [
        TaskExample(task="amazon-title", example_id=f"{u}-{i}", user_id=u, input=f"review {i}", target=f"title {i}",
                    timestamp=1000 + i)
        for u in TITLE_USERS for i in range(4)
    ]  # fmt: skip
    recs += [
        TaskExample(task="amazon-rating", example_id=f"{u}-r", user_id=u, input="x", target="5") for u in OTHER_USERS
    ]
    recs += [
        TaskExample(task="popquorn-offensiveness", example_id=f"{u}-{i}", user_id=u, input=f"text {i}", target="1")
        for u in UNDATED_USERS for i in range(5)
    ]  # fmt: skip
    s.add(recs)
    return s


def _evaluated(store: Store, task: str, *, split: str, n_users: int, seed: int) -> set[str]:
    the_split, _ = make_split(store, task, kind=split, n_users=n_users, seed=seed)
    return {u for u, _ in the_split.queries}


@pytest.mark.parametrize("split", ["auto", "user", "time"])
def test_the_population_never_holds_an_evaluated_user(store: Store, split: str) -> None:
    plan = population_for(store, "amazon-title", split=split, eval_users=8, seed=2)
    evaluated = _evaluated(store, "amazon-title", split=split, n_users=8, seed=2)
    assert len(evaluated) == 8 and not evaluated & set(plan.users)
    assert set(plan.users) == set(TITLE_USERS) - evaluated  # the task's users only: no other dataset's
    assert plan.kind == ("time" if split == "time" else "user") and plan.available == 22
    # samples are nested: a smaller `run --users` evaluates users the plan already left out
    assert not _evaluated(store, "amazon-title", split=split, n_users=3, seed=2) & set(plan.users)


def test_users_are_a_seeded_sample_not_an_alphabetical_prefix(store: Store) -> None:
    pool = population_for(store, "amazon-title", eval_users=8, seed=0).users
    first = population_for(store, "amazon-title", eval_users=8, seed=0, users=5)
    assert first.users == population_for(store, "amazon-title", eval_users=8, seed=0, users=5).users
    assert len(first.users) == 5 and set(first.users) < set(pool) and first.available == len(pool)
    assert list(first.users) != sorted(pool)[:5]
    other = population_for(store, "amazon-title", eval_users=8, seed=1, users=5)
    assert other.users != first.users
    assert not _evaluated(store, "amazon-title", split="user", n_users=8, seed=1) & set(other.users)
    assert population_for(store, "amazon-title", eval_users=8, seed=0, users=500).users == pool  # capped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "user", "eval_users": 30}, "leaving no population to fit on"),
        ({"split": "time", "eval_users": 30}, "leaves none to train on; lower --eval-users"),
        ({"split": "user", "users": 0}, "--users must be >= 1"),
        ({"split": "given"}, "no dev or test examples"),
    ],
    ids=["user-all-held-out", "time-all-evaluated", "zero-users", "no-given-split"],
)
def test_impossible_populations_raise_a_clear_error(store: Store, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        population_for(store, "amazon-title", **kwargs)


def test_an_evaluated_user_learns_only_before_their_query(store: Store) -> None:
    plan = population_for(store, "amazon-title", eval_users=8, seed=2)
    user = sorted(plan.queries)[0]
    assert user_cut(store, plan, user, {"steps": 3}) == {"steps": 3, "before": 1003}
    assert user_cut(store, plan, user, {"before": 5000})["before"] == 1003  # a later cut-off cannot leak
    assert user_cut(store, plan, user, {"before": 1001})["before"] == 1001  # an earlier one is kept
    assert user_cut(store, plan, plan.users[0], {"steps": 3}) == {"steps": 3}  # not evaluated: trainer default


def test_an_undated_query_is_held_out_only_when_it_is_the_latest(store: Store) -> None:
    """Undated queries are a seeded random pick; the trainers can only hold out the latest example."""
    task, refused, allowed = "popquorn-offensiveness", 0, 0
    for seed in range(10):
        plan = population_for(store, task, eval_users=3, seed=seed)
        for user, (query,) in plan.queries.items():
            latest = max(ex.example_id for ex in store.get_examples(task=task, user_id=user))
            if query.example_id == latest:
                assert user_cut(store, plan, user, {}) == {"exclude_latest": True}
                allowed += 1
            else:
                with pytest.raises(ValueError, match="cannot hold out"):
                    user_cut(store, plan, user, {})
                refused += 1
    assert refused and allowed  # both cases were exercised


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Replace the training step (which loads the base model) by a recorder of (population, job)."""
    calls: list[tuple[Any, Any]] = []

    def record(ctx: Any, store: Any, population: Any, job: Any, trainer: Any) -> Any:
        calls.append((population, job))
        meta = {"loss_curve": [1.0, 0.5], "steps": 1, "seconds": 0.1, "size_bytes": 0}
        return SimpleNamespace(name="adapter", path="nowhere", meta=meta)

    monkeypatch.setattr("tailorlm.cli.train._train_one", record)
    return calls


def _train(*args: str):
    return runner.invoke(app, ["train", "--method", "lora", "--task", "amazon-title", *args], catch_exceptions=False)


def test_train_global_learns_only_from_the_population(store: Store, trained: list[tuple[Any, Any]]) -> None:
    r = _train("--scope", "global", "--eval-users", "8", "--seed", "2")
    assert r.exit_code == 0, r.output
    ((population, job),) = trained
    evaluated = _evaluated(store, "amazon-title", split="user", n_users=8, seed=2)
    assert job.scope == "global" and not evaluated & set(population)
    assert sorted(population) == sorted(set(TITLE_USERS) - evaluated)
    assert "training population: 22 users of task 'amazon-title' (user split, seed 2" in r.output.replace("\n", " ")


def test_train_users_samples_the_population_with_the_seed(store: Store, trained: list[tuple[Any, Any]]) -> None:
    for seed in ("0", "0", "1"):
        assert _train("--scope", "global", "--users", "5", "--eval-users", "8", "--seed", seed).exit_code == 0
    (first, _), (again, _), (other, _) = trained
    assert first == again and first != other and len(first) == 5
    assert first == list(population_for(store, "amazon-title", eval_users=8, seed=0, users=5).users)
    assert first != sorted(store.list_users())[:5]  # not the old alphabetical prefix across datasets


def test_train_with_no_population_left_exits_2_without_training(store: Store, trained: list[tuple[Any, Any]]) -> None:
    r = _train("--scope", "global", "--eval-users", "30")
    assert r.exit_code == 2 and "no population to fit on" in r.output
    assert not trained


def test_train_user_scope_cuts_before_the_query(store: Store, trained: list[tuple[Any, Any]]) -> None:
    user = sorted(_evaluated(store, "amazon-title", split="user", n_users=8, seed=2))[0]
    r = _train("--scope", "user", "--user", user, "--eval-users", "8", "--seed", "2", "-O", "before=9999")
    assert r.exit_code == 0, r.output
    ((population, job),) = trained
    assert population is None and job.owner == user and job.config["before"] == 1003
    assert "is evaluated by the user split" in r.output


def test_the_queue_gives_each_job_its_tasks_population(store: Store) -> None:
    plan = population_for(store, "amazon-title", eval_users=8, seed=2)
    tctx = SimpleNamespace(users=None)
    on_job = _per_job_population(store, tctx, {}, split="auto", eval_users=8, seed=2)
    on_job(SimpleNamespace(job=TrainJob("lora", "global", "", "amazon-title")), 1, 3)
    assert tctx.users == list(plan.users)
    on_job(SimpleNamespace(job=TrainJob("lora", "global", "", "amazon-rating")), 2, 3)
    assert tctx.users == []  # no split possible (one example per user): never every user in the store
    on_job(SimpleNamespace(job=TrainJob("lora", "user", "u01", "amazon-title")), 3, 3)
    assert tctx.users is None
