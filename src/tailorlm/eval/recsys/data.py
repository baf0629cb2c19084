"""MovieLens ratings read from the store as parallel arrays, the input of every split and anchor.

One rating per (user, item): a re-rating keeps the latest value, and the ids of the
earlier ones are remembered so they are hidden along with it (one item must never sit
on both sides of a split). Not here: splitting (:mod:`tailorlm.eval.recsys.splits`)
and anything model-specific.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tailorlm.data import Store

__all__ = ["Ratings", "by_user", "load_ratings"]

_Row = tuple[str, str, float, int, str]  # user, item, rating, timestamp, interaction id


@dataclass(frozen=True)
class Ratings:
    """All ratings of one namespace as parallel arrays, sorted by (user, time, item)."""

    user: np.ndarray  # str user ids
    item: np.ndarray  # str item ids
    value: np.ndarray  # float ratings
    ts: np.ndarray  # int timestamps (0 when absent)
    iid: np.ndarray  # str interaction ids
    shadowed: dict[tuple[str, str], list[str]]  # (user, item) -> ids of earlier re-ratings that were dropped

    def __len__(self) -> int:
        return len(self.value)

    @property
    def duplicates(self) -> int:
        return sum(len(v) for v in self.shadowed.values())

    def hidden(self, rows: np.ndarray) -> dict[str, list[str]]:
        """Per user, the interaction ids a method must not see when ``rows`` are held out:
        those rows and any dropped earlier rating of the same items."""
        out: dict[str, list[str]] = {}
        for i in rows:
            out.setdefault(self.user[i], []).extend([self.iid[i], *self.shadowed.get((self.user[i], self.item[i]), [])])
        return out


def load_ratings(store: Store, namespace: str) -> Ratings:
    """Read every rating of ``namespace``'s users, one user at a time (the store's per-user API)."""
    prefix = f"{namespace}:"
    rows: dict[tuple[str, str], _Row] = {}
    shadowed: dict[tuple[str, str], list[str]] = {}
    for uid in store.list_users():
        if not uid.startswith(prefix):
            continue
        for it in store.get_interactions(user_id=uid, interaction="rating"):
            if it.value is None:
                continue
            row = (uid, it.item_id, float(it.value), int(it.timestamp or 0), str(it.interaction_id))
            old = rows.get((uid, it.item_id))
            # A re-rating is one implicit positive, and one item must never sit on both sides of a split:
            # keep the latest rating, and remember the others so they are hidden along with it.
            if old is None or (row[3], row[4]) > (old[3], old[4]):
                rows[(uid, it.item_id)] = row
            if old is not None:
                shadowed.setdefault((uid, it.item_id), []).append(min(old, row, key=lambda x: (x[3], x[4]))[4])
    if not rows:
        raise ValueError(f"no ratings of users '{prefix}*' in the store; load MovieLens first")
    ordered = sorted(rows.values(), key=lambda r: (r[0], r[3], r[1], r[4]))
    cols = list(zip(*ordered, strict=True))
    return Ratings(
        user=np.array(cols[0], dtype=object),
        item=np.array(cols[1], dtype=object),
        value=np.array(cols[2], dtype=float),
        ts=np.array(cols[3], dtype=np.int64),
        iid=np.array(cols[4], dtype=object),
        shadowed=shadowed,
    )


def by_user(users: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """Split ``order`` into runs of one user each, keeping ``order`` within a user (stable)."""
    order = order[np.argsort(users[order], kind="stable")]
    keys = users[order]
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.split(order, bounds)
