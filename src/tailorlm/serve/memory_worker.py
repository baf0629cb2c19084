"""Conversational memory off the request path: one worker thread, one queue, in order.

After a chat turn the route only enqueues ``(user_id, messages)``; the worker calls
``Memory.observe`` (fact extraction with the model, deduplication, invalidation of
contradicted facts) one conversation at a time. One thread keeps a user's turns in the
order they happened and never competes with itself for the model lock.

Deletion and memory must not race: ``exclusive`` is held while a conversation is
observed and while a user is deleted, and jobs queued for a user before the deletion
are dropped, so a deleted user is never brought back by a late memory write.

``queue.join()`` waits until everything queued so far is processed (tests use it
instead of sleeping).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["MemoryWorker"]

log = logging.getLogger("tailorlm.serve.memory")

_STOP = object()


class MemoryWorker:
    """Feeds conversations to ``memory_factory()``'s ``observe``; see the module docstring.

    ``memory_factory`` is called once, in the worker thread, on the first job; when it
    returns None (memory unavailable) jobs are dropped and counted as skipped.
    """

    def __init__(self, memory_factory: Callable[[], Any]) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.exclusive = threading.Lock()
        self.processed = 0
        self.failed = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._factory = memory_factory
        self._memory: Any = None
        self._memory_ready = False
        self._memory_lock = threading.Lock()
        self._seq = itertools.count()
        self._deleted_at: dict[str, int] = {}  # user -> sequence number of their deletion
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def memory(self) -> Any:
        """The Memory instance (built on first use)."""
        with self._memory_lock:
            if not self._memory_ready:
                self._memory_ready = True  # a failing factory is not retried on every job
                self._memory = self._factory()
            return self._memory

    def submit(self, user_id: str, messages: list[dict[str, str]]) -> None:
        """Queue one conversation for observation; never blocks."""
        self._ensure_started()
        self.queue.put((next(self._seq), user_id, [dict(m) for m in messages]))

    def user_deleted(self, user_id: str) -> None:
        """Drop every job queued for ``user_id`` so far (call while holding ``exclusive``)."""
        self._deleted_at[user_id] = next(self._seq)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the jobs already queued (up to ``timeout``), then end the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self.queue.put(_STOP)
        thread.join(timeout)

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tailorlm-memory", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            try:
                if job is _STOP:
                    return
                self._process(*job)
            finally:
                self.queue.task_done()

    def _process(self, seq: int, user_id: str, messages: list[dict[str, str]]) -> None:
        try:
            memory = self.memory
        except Exception as exc:  # e.g. the memory package failed to import or load
            self.failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("conversational memory is unavailable")
            return
        if memory is None:
            self.skipped += 1
            return
        with self.exclusive:
            if seq < self._deleted_at.get(user_id, -1):
                self.skipped += 1
                return
            try:
                memory.observe(user_id, messages)
                self.processed += 1
            except Exception as exc:  # one bad conversation must not stop memory for everyone
                self.failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("memory.observe failed for user %r", user_id)
