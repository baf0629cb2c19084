"""Deterministic evaluation splits, saved with the results so any row can be reproduced.

- ``user`` split (unseen users): a seeded sample of users is held out; each held-out
  user's latest example is the query and only their earlier data is eligible
  history. The remaining users are the population methods may ``fit`` on.
- ``time`` split: every sampled user's latest example is the query; the population
  is every user (their data before each query's time is what methods may see).
- ``given`` split: the dataset's own split, as published (LaMP's ``train`` / ``dev`` /
  ``test`` files; the loader records it in ``TaskExample.metadata["split"]``). Users of
  the ``train`` examples are the population; the queries are a seeded sample of the
  ``dev`` examples (``test`` when there is no dev), every question its own query.
- ``auto``: ``given`` when the task's examples carry a split, else ``user``.

A user is eligible as a query when they have earlier examples to learn from, or when
the example brings its own profile (``metadata["profile_ids"]``, LaMP: one question per
user whose history is the profile, not earlier examples).

``role="validation"`` gives a validation split disjoint from every test sample of up to
``reserve`` users under the same seed: test samples are the *first* users (or questions) of
the seeded order, validation ones the *last*; the reserved test users are removed from the
validation split's population too, so nothing a validation row fits on or is scored on
comes from a test user. Under ``given`` the validation queries are ``train`` questions
(dev/test stay unseen). Settings chosen on it are then applied to the test split.

Examples without timestamps (POPQUORN) are ordered by example id, and the query is
excluded from history by its item id instead of by time.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tailorlm.data import Store, TaskExample

__all__ = ["QUERY_SPLITS", "SPLIT_KINDS", "Split", "example_order", "make_split", "resolve_kind"]

SplitKind = Literal["user", "time", "given"]
SPLIT_KINDS = ("auto", "user", "time", "given")
QUERY_SPLITS = ("dev", "test")  # the given split's query files, in order of preference


@dataclass(frozen=True)
class Split:
    kind: SplitKind
    task: str
    seed: int
    population: tuple[str, ...]  # users methods may fit on
    queries: tuple[tuple[str, str], ...]  # (user_id, example_id), one per evaluated query

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def example_order(ex: TaskExample) -> tuple[bool, int, str]:
    """Chronological, undated last, ties by id: what "a user's latest example" means everywhere."""
    return (ex.timestamp is None, ex.timestamp or 0, ex.example_id)


def _own_profile(ex: TaskExample) -> bool:
    return bool(ex.metadata.get("profile_ids"))


def resolve_kind(kind: str, examples: Sequence[TaskExample]) -> SplitKind:
    """``auto`` -> ``given`` when the examples carry the dataset's split, else ``user``."""
    if kind not in SPLIT_KINDS:
        raise ValueError(f"split must be one of {SPLIT_KINDS}, got {kind!r}")
    if kind != "auto":
        return kind  # type: ignore[return-value]
    return "given" if any(ex.metadata.get("split") for ex in examples) else "user"


def make_split(
    store: Store,
    task: str,
    *,
    kind: str = "auto",
    n_users: int = 50,
    seed: int = 0,
    min_history: int = 1,
    role: Literal["test", "validation"] = "test",
    reserve: int | None = None,
    queries_per_user: int = 1,
) -> tuple[Split, dict[tuple[str, str], TaskExample]]:
    """Sample ``n_users`` users (questions for ``given``), their queries and the population.

    ``queries_per_user``: each sampled user's latest examples up to this many (every one
    keeping at least ``min_history`` earlier examples as history), for more test queries
    from the same users; paired tests then resample users, not queries
    (:mod:`tailorlm.eval.stats`). Ignored under ``given`` (one query per question).

    ``role="validation"``: the validation split, disjoint from the first ``reserve`` users
    (default ``n_users``) of the seeded order, the largest test sample it must not touch.

    Returns the split and the query examples by (user_id, example_id).

    Raises:
        ValueError: the store has no examples of ``task``, too few eligible users, or a
            sample that would leave no population to fit on.
    """
    if n_users < 1:
        raise ValueError(f"the number of evaluated users must be >= 1, got {n_users}")
    if queries_per_user < 1:
        raise ValueError(f"queries_per_user must be >= 1, got {queries_per_user}")
    examples = store.get_examples(task=task)
    if not examples:
        raise ValueError(f"no examples of task {task!r} in the store (load a dataset that provides them)")
    resolved = resolve_kind(kind, examples)
    if role not in ("test", "validation"):
        raise ValueError(f"role must be 'test' or 'validation', got {role!r}")
    reserved: set[Any] = set()
    if resolved == "given":
        if role == "validation":
            return _given_validation(examples, task, n_users=n_users, seed=seed, reserve=reserve or n_users)
        return _given_split(examples, task, n_users=n_users, seed=seed)
    by_user: dict[str, list[TaskExample]] = defaultdict(list)
    for ex in examples:
        by_user[ex.user_id].append(ex)
    eligible = sorted(u for u, exs in by_user.items() if len(exs) > min_history or any(map(_own_profile, exs)))
    if not eligible:
        raise ValueError(
            f"no user of task {task!r} has more than {min_history} examples or a profile of their own to learn from"
        )
    if role == "validation":
        reserved, sample = _validation_sample(eligible, n_users, seed, reserve or n_users, task)
    else:
        sample = _nested_sample(eligible, n_users, seed)
    queries: dict[tuple[str, str], TaskExample] = {}
    for u in sample:
        for q in _user_queries(sorted(by_user[u], key=example_order), u, seed, queries_per_user, min_history):
            queries[(u, q.example_id)] = q
    held_out = set(sample) | reserved
    if resolved == "user":
        population = sorted(u for u in by_user if u not in held_out)
    else:  # time: everyone's data before the queries, but never a reserved test user's
        population = sorted(u for u in by_user if u not in reserved)
    if not population:
        raise ValueError(
            f"evaluating {len(sample)} users of task {task!r} holds out all {len(by_user)} of its users, "
            f"leaving no population to fit on; ask for at most {len(by_user) - 1} users"
        )
    split = Split(resolved, task, seed, tuple(population), tuple(sorted(queries)))
    return split, queries


def _user_queries(exs: list[TaskExample], user: str, seed: int, k: int, min_history: int) -> list[TaskExample]:
    """A user's queries: their latest ``k`` examples that leave ``min_history`` earlier ones
    (at least the latest one); a user with a profile of their own (LaMP) asks one question.

    Without timestamps "latest" has no meaning: a choice seeded per user avoids always
    testing on the same id pattern and does not depend on which other users are sampled.
    """
    k = 1 if any(map(_own_profile, exs)) else max(1, min(k, len(exs) - min_history))
    if exs[-1].timestamp is not None:
        return exs[-k:]
    rng = random.Random(f"{seed}:{user}")
    return [rng.choice(exs)] if k == 1 else rng.sample(exs, k)


def _nested_sample(ids: Sequence[Any], n: int, seed: int) -> list[Any]:
    """A seeded shuffle, then the first n: samples are nested (the 50-user sample is part of
    the 100-user one), so rows of different sizes can still be paired on common queries."""
    order = list(ids)
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def _validation_sample(ids: Sequence[Any], n: int, seed: int, reserve: int, task: str) -> tuple[set[Any], list[Any]]:
    """(reserved test ids, validation sample): the last ``n`` of the seeded order, which never
    meet its first ``reserve`` (the test samples), and are nested as ``n`` grows.

    At most a third of the ids left after the reserve are taken, so the population a
    validation row fits on stays at least twice its sample: with few users (an annotation
    study), a validation run whose crowd is much thinner than the test run's would favour
    methods that need no crowd.
    """
    order = list(ids)
    random.Random(seed).shuffle(order)
    reserved = set(order[:reserve])
    rest = order[reserve:][::-1]
    if not rest:
        raise ValueError(
            f"task {task!r}: no user is left for validation after the {len(reserved)} reserved for test "
            f"({len(order)} eligible); evaluate fewer users"
        )
    return reserved, sorted(rest[: max(1, min(n, len(rest) // 3))])


def _given_validation(
    examples: Sequence[TaskExample], task: str, *, n_users: int, seed: int, reserve: int
) -> tuple[Split, dict[tuple[str, str], TaskExample]]:
    """Validation under the dataset's own split: a sample of ``train`` questions as queries,
    their users out of the population (the dev/test questions stay unseen)."""
    train = {(ex.user_id, ex.example_id): ex for ex in examples if ex.metadata.get("split") == "train"}
    if len(train) < 2:
        raise ValueError(f"task {task!r}: validation needs at least 2 train questions, found {len(train)}")
    test_split, _ = _given_split(examples, task, n_users=reserve, seed=seed)
    test_users = {u for u, _ in test_split.queries}
    keys = sorted(k for k in train if k[0] not in test_users)
    _, chosen = _validation_sample(keys, n_users, seed, 0, task)
    chosen = chosen[: max(1, min(n_users, len(keys) - 1))]
    held = {u for u, _ in chosen}
    population = sorted({u for u, _ in train if u not in held and u not in test_users})
    split = Split("given", task, seed, tuple(population), tuple(sorted(chosen)))
    return split, {key: train[key] for key in chosen}


def _given_split(
    examples: Sequence[TaskExample], task: str, *, n_users: int, seed: int
) -> tuple[Split, dict[tuple[str, str], TaskExample]]:
    by_split: dict[str, list[TaskExample]] = defaultdict(list)
    for ex in examples:
        by_split[str(ex.metadata.get("split") or "")].append(ex)
    query_split = next((s for s in QUERY_SPLITS if by_split.get(s)), None)
    if query_split is None:
        found = sorted(s or "(none)" for s in by_split)
        raise ValueError(
            f"task {task!r} has no dev or test examples to evaluate (splits found: {found}); "
            "load the dev (or test) questions too"
        )
    keyed = {(ex.user_id, ex.example_id): ex for ex in by_split[query_split]}
    chosen = _nested_sample(sorted(keyed), n_users, seed)
    queries = {key: keyed[key] for key in chosen}
    population = sorted({ex.user_id for ex in by_split.get("train", [])})
    split = Split("given", task, seed, tuple(population), tuple(sorted(queries)))
    return split, queries
