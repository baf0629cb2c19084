"""What a process derived from one user's rows, kept while the user's data version holds.

The request path reads a user's whole history (every document of a kind, or every
interaction with its item) and then filters it per query (strictly before the query
time, without the query's own document). Kept here per ``(user, what)`` under the
:class:`~tailorlm.data._versions.DataVersion` read just before the rows were, a repeated
request reads one version row instead of the user's rows. Reading the version *first* is
what makes this safe without a transaction: a write that lands between the two reads
leaves newer rows under an older version, which the next request sees as a miss; the
reverse order could keep older rows under the newer version.

Bounded by the number of entries held in all (LRU); a value longer than the bound is
returned but not kept. One user's values never answer another user's call: the user id
is part of every key, and ``forget`` drops a user's values at once after a deletion.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from tailorlm.data._versions import DataVersion

__all__ = ["UserCache"]

T = TypeVar("T")


class UserCache:
    """An LRU of per-user sequences, each valid for one data version.

    Args:
        max_entries: how many elements (history entries) all kept sequences may hold; 0
            turns caching off.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._values: OrderedDict[tuple[str, Hashable], tuple[DataVersion, Sequence[object]]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, user_id: str, what: Hashable, version: DataVersion, load: Callable[[], Sequence[T]]) -> Sequence[T]:
        """The kept value of ``(user_id, what)`` at ``version``, else ``load()`` (kept when it fits)."""
        key = (user_id, what)
        if version.cacheable and self.max_entries:
            with self._lock:
                hit = self._values.get(key)
                if hit is not None and hit[0] == version:
                    self._values.move_to_end(key)
                    self.hits += 1
                    return hit[1]  # type: ignore[return-value]
        value = load()
        with self._lock:
            self.misses += 1
            old = self._values.pop(key, None)  # an older version is never asked for again
            if old is not None:
                self._held -= len(old[1])
            if version.cacheable and len(value) <= self.max_entries:
                self._values[key] = (version, value)
                self._held += len(value)
                while self._held > self.max_entries:
                    self._held -= len(self._values.popitem(last=False)[1][1])
        return value

    def forget(self, user_id: str) -> None:
        """Drop every value of ``user_id``."""
        with self._lock:
            for key in [k for k in self._values if k[0] == user_id]:
                self._held -= len(self._values.pop(key)[1])

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._held = 0

    @property
    def held(self) -> int:
        """Elements held in all."""
        return self._held
