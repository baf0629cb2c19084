"""Deterministic evaluation splits, saved with the results so any row can be reproduced.

- ``user`` split (unseen users): a seeded sample of users is held out; each held-out
  user's latest example is the query and only their earlier data is eligible
  history. The remaining users are the population methods may ``fit`` on.
- ``time`` split: every sampled user's latest example is the query; the population
  is every user (their data before each query's time is what methods may see).

Examples without timestamps (POPQUORN) are ordered by example id, and the query is
excluded from history by its item id instead of by time.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tailorlm.data import Store, TaskExample

__all__ = ["Split", "make_split"]


@dataclass(frozen=True)
class Split:
    kind: Literal["user", "time"]
    task: str
    seed: int
    population: tuple[str, ...]  # users methods may fit on
    queries: tuple[tuple[str, str], ...]  # (user_id, example_id), one per evaluated user

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _order(ex: TaskExample) -> tuple[bool, int, str]:
    return (ex.timestamp is None, ex.timestamp or 0, ex.example_id)


def make_split(
    store: Store,
    task: str,
    *,
    kind: Literal["user", "time"] = "user",
    n_users: int = 50,
    seed: int = 0,
    min_history: int = 1,
) -> tuple[Split, dict[tuple[str, str], TaskExample]]:
    """Sample ``n_users`` users with at least ``min_history`` earlier examples and pick their queries.

    Returns the split and the query examples by (user_id, example_id).

    Raises:
        ValueError: the store has no examples of ``task``, or too few eligible users.
    """
    by_user: dict[str, list[TaskExample]] = defaultdict(list)
    for ex in store.get_examples(task=task):
        by_user[ex.user_id].append(ex)
    if not by_user:
        raise ValueError(f"no examples of task {task!r} in the store (load a dataset that provides them)")
    eligible = sorted(u for u, exs in by_user.items() if len(exs) > min_history)
    if not eligible:
        raise ValueError(f"no user of task {task!r} has more than {min_history} examples")
    # A seeded shuffle, then the first n: samples are nested (the 50-user sample is part
    # of the 100-user one), so rows of different sizes can still be paired on common queries.
    order = list(eligible)
    random.Random(seed).shuffle(order)
    sample = sorted(order[:n_users])
    queries: dict[tuple[str, str], TaskExample] = {}
    for u in sample:
        exs = sorted(by_user[u], key=_order)
        # Without timestamps "latest" has no meaning: a choice seeded per user avoids always
        # testing on the same id pattern and does not depend on which other users are sampled.
        q = exs[-1] if exs[-1].timestamp is not None else random.Random(f"{seed}:{u}").choice(exs)
        queries[(u, q.example_id)] = q
    held_out = set(sample)
    population = sorted(u for u in by_user if u not in held_out) if kind == "user" else sorted(by_user)
    split = Split(
        kind=kind,
        task=task,
        seed=seed,
        population=tuple(population),
        queries=tuple(sorted(queries)),
    )
    return split, queries
