"""A request's handle between a route and the scheduler thread (:class:`Ticket`), and its
finished answer (:class:`Completion`).

The route awaits text deltas on the event loop; the scheduler thread pushes them with
``call_soon_threadsafe``. A ticket made off any event loop (the service's own model calls
from worker threads) is waited on with :meth:`Ticket.wait` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tailorlm.models.base import GenerationConfig
from tailorlm.models.continuous import RowEvent
from tailorlm.models.inputs import ModelInput

__all__ = ["Completion", "Ticket"]


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    completion_tokens: int


class Ticket:
    """One request's handle: ``async for delta in ticket`` streams, ``await ticket.result()`` waits.

    Created on the event loop; the scheduler thread feeds it through ``call_soon_threadsafe``.
    ``cancel()`` (a disconnect) removes the row before the next decode step. Created off any
    event loop (a worker thread's model call), it is waited on with :meth:`wait`.
    """

    def __init__(self, row_id: int, row: ModelInput, config: GenerationConfig, key: str | None) -> None:
        self.row_id, self.row, self.config, self.key = row_id, row, config, key
        self.created = time.monotonic()
        self.deadline = math.inf
        self.admitted_at: float | None = None  # left the queue for the batch
        self.prefill_at: float | None = None  # its prefill began (after its pass's earlier groups)
        self.first_token_at: float | None = None
        self.prompt_tokens: int | None = None
        self.cancelled = False
        self.done = False
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._events: asyncio.Queue[RowEvent | BaseException] = asyncio.Queue()
        self._finished = threading.Event()
        self._outcome: RowEvent | BaseException | None = None
        self._peeked: RowEvent | BaseException | None = None
        self._completion: Completion | None = None

    def cancel(self) -> None:
        self.cancelled = True

    def timings(self) -> dict[str, float]:
        """Milliseconds spent so far in each phase before the first token: ``queue`` (waiting
        for a batch slot), ``wait`` (behind earlier prefill groups of the same pass), ``prefill``."""
        marks = [("queue", self.created, self.admitted_at), ("wait", self.admitted_at, self.prefill_at),
                 ("prefill", self.prefill_at, self.first_token_at)]  # fmt: skip
        return {name: (end - start) * 1000 for name, start, end in marks if start is not None and end is not None}

    # called from the scheduler thread
    def _push(self, item: RowEvent | BaseException) -> None:
        if isinstance(item, RowEvent) and self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if isinstance(item, BaseException) or item.finished:
            self.done = True
        if self._loop is None:
            if self.done:
                self._outcome = item
                self._finished.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(self._events.put_nowait, item)

    def wait(self) -> str:
        """Block until the answer is done (a ticket made off the event loop); its text."""
        self._finished.wait()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome.text or ""

    async def started(self) -> None:
        """Wait for the first token (or raise the request's error): a streaming route answers
        200 only once the row is really running."""
        if self._peeked is None and self._completion is None:
            self._peeked = await self._events.get()
        if isinstance(self._peeked, BaseException):
            raise self._peeked

    async def __aiter__(self) -> AsyncIterator[str]:
        while self._completion is None:
            if self._peeked is not None:
                item, self._peeked = self._peeked, None
            else:
                item = await self._events.get()
            if isinstance(item, BaseException):
                raise item
            if item.finished:
                self._completion = Completion(item.text or "", item.finish_reason or "stop", item.completion_tokens)
            if item.delta:
                yield item.delta

    async def result(self) -> Completion:
        """The whole answer (drains the stream)."""
        async for _ in self:
            pass
        assert self._completion is not None
        return self._completion

    @property
    def completion(self) -> Completion | None:
        return self._completion
