"""What the routes share: the store, the engine, the keys, the memory worker, and two dependencies.

Routes get the :class:`Service` and the caller's :class:`~tailorlm.serve.auth.Principal`
through FastAPI dependencies rather than module globals, so several apps (tests run
more than one) never share state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tailorlm.data import Store
from tailorlm.eval.erasure import forget_user_caches
from tailorlm.serve.auth import KeyStore, Principal
from tailorlm.serve.engine import Engine
from tailorlm.serve.errors import ApiError
from tailorlm.serve.memory_worker import MemoryWorker
from tailorlm.serve.scheduler import Scheduler
from tailorlm.settings import Settings

__all__ = ["Service", "get_principal", "get_service"]

T = TypeVar("T")
log = logging.getLogger("tailorlm.serve")


def personalize_threads(setting: int) -> int:
    """How many requests are personalized at once: ``setting``, or the CPUs when it is 0.

    Personalizing is CPU-bound Python (read the user's history, index it, rank it), so
    threads beyond the CPUs only queue for the GIL, while each holds a working set that
    grows with its user's history; the allocator keeps the high-water mark of all of them
    (measured: 600 requests over 800-document histories on 16 threads +28 MB resident, on 2
    +8 MB, in the same time). Bounding them separately also keeps the default thread pool
    (40 threads) free for reads and writes.
    """
    return setting or os.cpu_count() or 1


@dataclass
class Service:
    settings: Settings
    store: Store
    engine: Engine
    keys: KeyStore
    memory: MemoryWorker | None
    scheduler: Scheduler
    _limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)
    # SQLite has one writer at a time and makes the others poll with sleeps of up to 100 ms;
    # queueing this process's writers on a lock hands the database over at once instead.
    write_lock: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.write_lock is None:
            sqlite = self.store.engine.dialect.name == "sqlite"
            self.write_lock = threading.Lock() if sqlite else contextlib.nullcontext()

    def write(self, records: Iterable[Any], *, source: str) -> None:
        """Store records in one transaction (all or nothing)."""
        with self.write_lock, self.store.writer(source=source) as w:
            w.add_all(records)

    async def generate(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a personalizing call (a chat's prompt, the workbench's compare) in a worker thread,
        never on the event loop, at most :func:`personalize_threads` at once; chat generation
        itself goes through :attr:`scheduler`."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(personalize_threads(self.settings.serve.personalize_threads))
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def remember(self, user_id: str, messages: list[dict[str, str]]) -> None:
        """Schedule conversational memory for this turn (no-op when memory is off)."""
        if self.memory is not None:
            self.memory.submit(user_id, messages)

    def delete_user(self, user_id: str) -> tuple[Any, int]:
        """Delete every row, file and key of ``user_id``; fitted methods refit on next use."""
        exclusive = self.memory.exclusive if self.memory is not None else contextlib.nullcontext()
        with exclusive, self.write_lock:
            if self.memory is not None:
                self.memory.user_deleted(user_id)
            report = self.store.delete_user(user_id=user_id)
        keys = self.keys.delete_for_user(user_id)
        self.engine.invalidate()
        try:  # outside the write lock: a CLI run writing the cache may hold it for seconds
            report.rows.update(forget_user_caches(self.settings.cache_dir, user_id))
        except (OSError, sqlite3.Error):  # the deletion stands; the operator must purge by hand
            log.exception("a user was deleted, but the caches in %s could not be purged", self.settings.cache_dir)
        return report, keys

    def forget_fact(self, user_id: str, fact_id: str) -> int:
        """Delete one fact; through ``Memory.forget`` when memory is available (it may hold more)."""
        memory = self.memory.memory if self.memory is not None else None
        forget = getattr(memory, "forget", None)
        if forget is not None:
            n = int(forget(user_id, fact_id=fact_id))
        else:
            n = int(self.store.delete_fact(user_id=user_id, fact_id=fact_id))
        self.engine.forget(user_id)
        return n


# The two dependencies are ``async`` on purpose: FastAPI runs sync dependencies in the thread
# pool, which would cost two thread hops per request for two attribute reads.


async def get_service(request: Request) -> Service:
    return request.app.state.service


_bearer = HTTPBearer(auto_error=False, description="an admin key or a user-scoped key: tlm_<id>_<secret>")


async def get_principal(request: Request, _: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Principal:
    """The caller, as authenticated by :class:`~tailorlm.serve.middleware.AuthMiddleware`."""
    principal = getattr(request.state, "principal", None)
    if principal is None:  # a route outside the middleware's prefix: a wiring error
        raise ApiError(401, "missing API key: send the header 'Authorization: Bearer <key>'")
    return principal
