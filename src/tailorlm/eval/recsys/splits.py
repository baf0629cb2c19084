"""Held-out splits of the MovieLens ratings: the rating-prediction split and RecBole's per-user 80/10/10.

- :func:`rating_split`: a seeded random share of all ratings, or each user's latest share.
- :func:`recbole_split`: RecBole's ``RS`` split grouped by user (:data:`RECBOLE_PROTOCOL`),
  in random or time order, with the interaction ids every method must not see.

Both are deterministic given the seed. Not here: loading the ratings
(:mod:`tailorlm.eval.recsys.data`) and training or scoring models on the splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tailorlm.eval.recsys.data import Ratings, by_user

__all__ = ["RECBOLE_PROTOCOL", "Order", "RecBoleSplit", "Split", "rating_split", "recbole_split"]

Split = Literal["random", "temporal"]
Order = Literal["RO", "TO"]

#: What RecBole's defaults (``overall.yaml``, ``ml-100k.yaml``, ``BPR.yaml``) prescribe and how we differ.
RECBOLE_PROTOCOL: dict[str, Any] = {
    "name": "RecBole general recommendation defaults",
    "feedback": "implicit: every rating is a positive interaction (no threshold, duplicates none in ML-100K)",
    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
    "ranking": "full ranking over all items; the user's train and valid items are removed before ranking test",
    "metrics": ["recall@k", "mrr@k", "ndcg@k", "hit@k", "precision@k"],
    "valid_metric": "mrr@10",
    "differences": [
        "BPR from Cornac (SGD with item bias) rather than RecBole's PyTorch BPR (Adam, no bias)",
        "validation every eval_every epochs with patience, not every epoch with stopping_step=10",
        "the random order comes from numpy's default_rng(seed), so the split is not RecBole's seed-2020 split",
    ],
}


def rating_split(r: Ratings, split: Split, seed: int, test_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test). 'random': a seeded 20% of all ratings; 'temporal': each user's latest 20%."""
    n = len(r)
    if split == "random":
        perm = np.random.default_rng(seed).permutation(n)
        n_test = round(test_ratio * n)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    if split == "temporal":
        train, test = [], []
        for rows in by_user(r.user, np.arange(n)):  # already time-ordered within a user
            n_test = round(test_ratio * len(rows))
            cut = len(rows) - n_test
            train.append(rows[:cut])
            test.append(rows[cut:])
        return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    raise ValueError(f"split must be 'random' or 'temporal', got {split!r}")


def _recbole_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """RecBole's ``_calcu_split_ids``: every part but the first rounded down, none left empty if avoidable."""
    total = sum(ratios)
    ratios = [x / total for x in ratios]
    cnt = [int(x * n) for x in ratios]
    cnt[0] = n - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@dataclass(frozen=True)
class RecBoleSplit:
    """Every user's interactions split three ways, as item indices per user index."""

    users: list[str]  # user index -> user id
    items: list[str]  # item index -> item id (every item with an interaction)
    train: dict[int, np.ndarray]  # user index -> item indices
    valid: dict[int, np.ndarray]
    test: dict[int, np.ndarray]
    held_out: dict[str, tuple[str, ...]]  # user id -> interaction ids in valid or test


def recbole_split(r: Ratings, *, seed: int, order: Order, ratios: Sequence[float]) -> RecBoleSplit:
    """RecBole's ``RS`` split grouped by user: each user's interactions cut by :func:`_recbole_counts`.

    ``order="RO"`` shuffles the interactions with ``seed`` first; ``"TO"`` keeps each
    user's time order (test = latest). ``held_out`` covers valid and test, plus dropped
    earlier ratings of the same items.
    """
    users = sorted(set(r.user.tolist()))
    items = sorted(set(r.item.tolist()))
    if order == "RO":
        perm = np.random.default_rng(seed).permutation(len(r))
    elif order == "TO":
        perm = np.arange(len(r))  # load_ratings sorts each user's ratings by time
    else:
        raise ValueError(f"order must be 'RO' or 'TO', got {order!r}")
    u_index = {u: n for n, u in enumerate(users)}
    i_index = {i: n for n, i in enumerate(items)}
    parts: list[dict[int, np.ndarray]] = [{}, {}, {}]
    held_out: dict[str, tuple[str, ...]] = {}
    for rows in by_user(r.user, perm):
        uu = u_index[r.user[rows[0]]]
        bounds = np.cumsum(_recbole_counts(len(rows), ratios))[:-1]
        for part, chunk in zip(parts, np.split(rows, bounds), strict=True):
            part[uu] = np.array([i_index[x] for x in r.item[chunk]], dtype=np.int64)
        held_out[users[uu]] = tuple(sorted(r.hidden(rows[bounds[0] :]).get(users[uu], [])))
    train, valid, test = parts
    return RecBoleSplit(users, items, train, valid, test, held_out)
