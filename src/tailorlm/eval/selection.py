"""Settings chosen on validation users, never on the users a row is scored on.

A head's shrinkage strengths and decision rule (:mod:`tailorlm.tasks.heads`) are chosen
by an inner split of the *population* (the users a row may fit on, already disjoint from
its test users): a seeded sample of population users is held out, each with their latest
example as a validation query and only their earlier history visible, exactly as test
queries are treated; the head is fitted on the other population users, every setting of
its grid is scored on the held-out ones, and the best (ties: the first in grid order,
which lists the most conservative setting first) is refitted on the whole population.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tailorlm.data import TaskExample
from tailorlm.eval.metrics import rating_scores
from tailorlm.eval.splits import example_order
from tailorlm.personalize import Query
from tailorlm.tasks.base import Task
from tailorlm.tasks.heads import INF, Observation
from tailorlm.tasks.predict import Prediction

__all__ = ["fit_head", "observation_of", "training_queries", "validation_examples"]

HistoryOf = Callable[[TaskExample], list[Observation]]


def observation_of(ex: TaskExample) -> Observation:
    return Observation(ex.input, ex.target, ex.user_id, ex.metadata.get("item_id"))


def validation_examples(
    examples: Sequence[TaskExample], seed: int, *, max_users: int = 300, fraction: float = 0.2
) -> tuple[list[TaskExample], list[TaskExample]]:
    """(fit examples, validation queries): a seeded sample of users (``fraction`` of them, at
    most ``max_users``), each contributing their latest example as a query and nothing to
    the fit; empty queries when there are too few users to hold any out."""
    by_user: dict[str, list[TaskExample]] = {}
    for ex in examples:
        by_user.setdefault(ex.user_id, []).append(ex)
    users = sorted(by_user)
    n = min(max_users, int(len(users) * fraction))
    if n < 1 or len(users) - n < 1:
        return list(examples), []
    random.Random(f"validation:{seed}").shuffle(users)
    held = set(users[:n])
    queries = [max(by_user[u], key=example_order) for u in sorted(held)]
    return [ex for ex in examples if ex.user_id not in held], queries


def _score(task: Task, predictions: Sequence[Prediction], golds: Sequence[str]) -> float:
    """Higher is better: minus MAE for ratings, accuracy otherwise."""
    answers = [p.answer if isinstance(p.answer, str) else None for p in predictions]
    if task.kind == "rating":
        lo, hi = int(task.labels[0]), int(task.labels[-1])
        return -rating_scores(answers, [float(g) for g in golds], low=lo, high=hi)["mae"]
    return float(np.mean([a == g for a, g in zip(answers, golds, strict=True)]))


def _plain(value: Any) -> Any:
    return "inf" if value == INF else value


def training_queries(examples: Sequence[TaskExample], seed: int, *, per_user: int = 3, limit: int = 4000) -> set[int]:
    """Indices of the examples a head that learns from histories trains on: each user's
    latest ``per_user`` (test queries are a user's latest), at most ``limit`` in all (a
    seeded sample), so fitting costs a bounded number of history reads."""
    by_user: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_user.setdefault(ex.user_id, []).append(i)
    picked = [
        i for u in sorted(by_user) for i in sorted(by_user[u], key=lambda j: example_order(examples[j]))[-per_user:]
    ]
    if len(picked) > limit:
        picked = random.Random(f"training:{seed}").sample(picked, limit)
    return set(picked)


def _fit(head: Any, task: Task, examples: Sequence[TaskExample], history_of: HistoryOf, seed: int) -> Any:
    observations = [observation_of(ex) for ex in examples]
    if not getattr(head, "learns_from_histories", False):
        return head.fit(task, observations)
    rows = training_queries(examples, seed)
    histories = [history_of(ex) if i in rows else None for i, ex in enumerate(examples)]
    return head.fit(task, observations, histories=histories)


def fit_head(
    head: Any, task: Task, population: Sequence[TaskExample], history_of: HistoryOf, *, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Choose ``head``'s settings on validation users of ``population``, then fit it on all of it.

    Returns the fitted head (its chosen settings in ``head.settings_``, to pass to
    ``predict``) and what was chosen, JSON-ready, to report beside the row: the settings,
    the validation metric of the best one and the number of validation queries.
    """
    grid = head.grid(task)
    fit_part, queries = validation_examples(population, seed)
    chosen: dict[str, Any] = {"params": {}, "validation_n": len(queries)}
    best: dict[str, Any] = {}
    if grid and queries:
        _fit(head, task, fit_part, history_of, seed)
        qs = [observation_of(ex) for ex in queries]
        hists = [history_of(ex) for ex in queries]
        choices = [Query.from_example(ex).choices for ex in queries]
        golds = [ex.target or "" for ex in queries]
        names = list(grid)
        tried = []
        for values in itertools.product(*(grid[k] for k in names)):
            params = dict(zip(names, values, strict=True))
            score = _score(task, head.predict(task, qs, hists, choices, **params), golds)
            tried.append((score, params))
        best_score, best = max(tried, key=lambda t: t[0])  # max keeps the first of equals
        chosen["params"] = {k: _plain(v) for k, v in best.items()}
        chosen["validation_metric"] = "mae" if task.kind == "rating" else "accuracy"
        chosen["validation_value"] = abs(best_score) if task.kind == "rating" else best_score
    elif grid:
        best = {k: v[0] for k, v in grid.items()}
        chosen["params"] = {k: _plain(v) for k, v in best.items()}
    _fit(head, task, population, history_of, seed)
    head.settings_ = best
    return head, chosen
