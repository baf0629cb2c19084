"""Rate-limit buckets every worker process shares, kept in the store.

With ``tailorlm serve --workers N`` each request lands on any of N processes; buckets
kept in each process's memory would let a key spend N times its limit. Here a take is
one atomic statement (an upsert that refills, spends and says whether it could, with
``RETURNING``), so concurrent takes from any process serialize on the bucket's row
in SQLite and PostgreSQL alike and never lose an update.

The table is service state, not user data: created on first use, never migrated
(losing it only refills every bucket). Wall-clock time is used, since monotonic
clocks are not comparable across processes.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, case, delete
from sqlalchemy.dialects import postgresql, sqlite

from tailorlm.data import Store

__all__ = ["SharedTokenBucket"]

_meta = MetaData()
rate_buckets = Table(
    "serve_rate_buckets",
    _meta,
    Column("bucket", String(300), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
    Column("allowed", Integer, nullable=False),
)


class SharedTokenBucket:
    """The same per-key token bucket as :class:`~tailorlm.serve.middleware.TokenBucket`, in the store.

    ``take`` touches the database, so callers on an event loop run it in a thread
    (``blocking`` is True).
    """

    blocking = True

    def __init__(self, store: Store, per_minute: int, *, prune_every: int = 1000) -> None:
        self.store = store
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.prune_every = prune_every
        self._takes = 0
        self._lock = threading.Lock()
        _meta.create_all(store.engine, checkfirst=True)

    def take(self, key: str, now: float | None = None) -> float | None:
        """Spend one token; return None if allowed, else the seconds until one is available."""
        if self.capacity <= 0:
            return None
        now = time.time() if now is None else now
        c = rate_buckets.c
        refilled = c.tokens + (now - c.updated_at) * self.rate
        level = case((refilled > self.capacity, self.capacity), else_=refilled)
        dialect = sqlite if self.store.engine.dialect.name == "sqlite" else postgresql
        stmt = dialect.insert(rate_buckets).values(bucket=key, tokens=self.capacity - 1.0, updated_at=now, allowed=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.bucket],
            set_={
                "tokens": case((level >= 1.0, level - 1.0), else_=level),
                "updated_at": now,
                "allowed": case((level >= 1.0, 1), else_=0),
            },
        ).returning(c.tokens, c.allowed)
        with self.store.engine.begin() as conn:
            tokens, allowed = conn.execute(stmt).one()
        self._maybe_prune(now)
        return None if allowed else (1.0 - tokens) / self.rate

    def _maybe_prune(self, now: float) -> None:
        """Forget buckets that are full again (no take for a whole refill period)."""
        with self._lock:
            self._takes += 1
            if self._takes % self.prune_every:
                return
        full_after = self.capacity / self.rate
        with self.store.engine.begin() as conn:
            conn.execute(delete(rate_buckets).where(rate_buckets.c.updated_at < now - full_after))
