"""Between the routes and the model: admission, continuous batching, cancellation, time limits.

A route hands :meth:`Scheduler.submit` one personalized row (messages, adapter, soft prompt)
and its decoding settings and gets a :class:`Ticket`: an async stream of text deltas that
ends with the finished answer. One scheduler thread owns the model's decode batch
(:class:`~tailorlm.models.continuous.ContinuousBatch` for the local model) and loops:

1. drop cancelled and timed-out rows (a client that disconnected, a request past
   ``request_timeout_s``) from the queue and the batch;
2. admit waiting requests in FIFO order while the batch has room, up to ``prefill_tokens``
   of prompt per loop (at least one request), so a burst of long prompts cannot hold the
   running rows for long; each is prefilled alone, or, with ``prefill_together`` (in bf16 a
   pass over several prompts costs less than their prefills one after another), those of
   similar length in one pass (padding at most ``GROUP_SLACK`` of the group);
3. with ``prefill_first``, if requests arrived meanwhile and the batch has room, go back to 2
   (prefills before decoding, as vLLM schedules them: a burst that reaches the server over a
   few milliseconds does not wait a decode step per wave; the running rows wait at most
   ``max_batch_size`` such passes in a row);
4. decode one token for every running row and hand each ticket its delta. With
   ``interrupt_steps``, a step during which a request arrives (and the batch has room)
   stops at the next decoder layer, its cache untouched, and the loop goes back to 2: the
   newcomer's prefill starts at once instead of after the step (70-100 ms for 9 rows on 2
   CPU cores). Requests that were already waiting when the step began (deferred by rule 3)
   do not stop it, and no step gives way once the running rows have gone ``max_stall_s``
   without a token, so arrivals cannot starve them. The abandoned part of a step is lost.

The generator's lock is held for one prefill or one decode step at a time, so other users
of the model (memory extraction, the workbench's compare) interleave between steps.

Admission is bounded: at most ``max_per_key`` requests in flight per API key (429), at most
``max_queue`` waiting (429 with ``Retry-After``). A generator without a decode batch (an
HTTP backend, which batches on its own server) runs each request whole in a pool of
``max_batch_size`` threads under the same admission rules.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tailorlm.errors import BackendError
from tailorlm.models.base import GenerationConfig, count_text_tokens
from tailorlm.models.continuous import DecodeBatch, RowEvent
from tailorlm.models.inputs import ModelInput, generate_inputs
from tailorlm.serve.errors import ApiError
from tailorlm.serve.ticket import Completion, Ticket

__all__ = ["Completion", "Scheduler", "SchedulerStats", "Ticket", "until_disconnect"]

log = logging.getLogger("tailorlm.serve")


@dataclass(frozen=True)
class SchedulerStats:
    running: int  # rows in the decode batch
    queued: int
    in_flight: int  # queued + running, all keys
    steps: int  # decode steps since start
    max_batch_seen: int


GROUP_SLACK = 0.25  # padding a prefill group may add, as a share of its real tokens


class Scheduler:
    """See the module docstring. ``generator`` is the engine's :class:`LockedGenerator`."""

    def __init__(
        self,
        generator: Any,
        *,
        max_batch_size: int = 8,
        max_queue: int = 64,
        max_per_key: int = 4,
        request_timeout_s: float = 300.0,
        prefill_tokens: int = 1024,
        prefill_together: bool = False,
        prefill_first: bool = False,
        interrupt_steps: bool = False,
        max_stall_s: float = 1.0,
    ) -> None:
        if max_batch_size < 1 or max_queue < 0 or max_per_key < 1 or request_timeout_s <= 0:
            raise ValueError("max_batch_size and max_per_key must be >= 1, max_queue >= 0, request_timeout_s > 0")
        self.generator = generator
        self.max_batch_size, self.max_queue, self.max_per_key = max_batch_size, max_queue, max_per_key
        self.request_timeout_s, self.prefill_tokens = request_timeout_s, prefill_tokens
        self.prefill_together, self.prefill_first = prefill_together, prefill_first
        self.interrupt_steps, self.max_stall_s = interrupt_steps, max_stall_s
        self._passes_since_step = 0  # prefill passes since the last decode step (scheduler thread)
        self._submitted = 0  # requests ever queued: a step compares it with its value at the start
        self._advanced_at = 0.0  # when the running rows last got a token (scheduler thread)
        make = getattr(generator.inner, "decode_batch", None)
        self._batch: DecodeBatch | None = make() if callable(make) else None
        self._pool = None if self._batch is not None else ThreadPoolExecutor(max_batch_size, "tailorlm-generate")
        self._cond = threading.Condition()
        self._queue: deque[Ticket] = deque()
        self._running: dict[int, Ticket] = {}
        self._per_key: Counter[str] = Counter()
        self._ids = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._steps = 0
        self._max_batch_seen = 0
        self._seconds_per_request = 1.0  # running mean, for Retry-After

    @property
    def continuous(self) -> bool:
        return self._batch is not None

    def stats(self) -> SchedulerStats:
        with self._cond:
            running = len(self._running)
            queued = len(self._queue)
            return SchedulerStats(running, queued, running + queued, self._steps, self._max_batch_seen)

    # -- admission (event loop) -------------------------------------------------------------

    def submit(
        self,
        row: ModelInput,
        config: GenerationConfig,
        *,
        key: str | None = None,
        prompt_tokens: int | None = None,
        internal: bool = False,
    ) -> Ticket:
        """Queue one request; raises ApiError(429) past the per-key cap or the queue bound.

        ``prompt_tokens`` (counted by the caller, who bounds it) sizes the prefill budget.
        ``internal`` work (memory extraction, profile summaries) is never refused."""
        with self._cond:
            if self._closed:
                raise ApiError(503, "the server is shutting down", type="server_error")
            if key is not None and self._per_key[key] >= self.max_per_key:
                raise ApiError(
                    429,
                    f"this API key already has {self._per_key[key]} requests in flight (at most {self.max_per_key}); "
                    "wait for one to finish",
                    code="too_many_concurrent_requests",
                    headers={"Retry-After": "1"},
                )
            waiting = len(self._queue) + max(0, len(self._running) - self.max_batch_size + 1)
            full = len(self._queue) >= self.max_queue and len(self._running) >= self.max_batch_size
            if full and not internal:
                retry = max(1, math.ceil(waiting * self._seconds_per_request / self.max_batch_size))
                raise ApiError(
                    429,
                    f"the server is at capacity ({len(self._running)} running, {len(self._queue)} queued, "
                    f"queue limit {self.max_queue}); retry in about {retry} s",
                    code="server_busy",
                    headers={"Retry-After": str(retry)},
                )
            ticket = Ticket(next(self._ids), row, config, key)
            ticket.deadline = ticket.created + self.request_timeout_s
            ticket.prompt_tokens = prompt_tokens
            if key is not None:
                self._per_key[key] += 1
            if self._pool is not None:
                self._running[ticket.row_id] = ticket
                self._pool.submit(self._run_whole, ticket)
            else:
                self._queue.append(ticket)
                self._submitted += 1
                self._ensure_thread()
                self._cond.notify()
            return ticket

    def generate(self, rows: list[ModelInput], config: GenerationConfig) -> list[str]:
        """Answer ``rows`` through the running batch, blocking: for the service's own model
        calls from worker threads (memory extraction, profile summaries), which would
        otherwise hold the model for a whole generation while every chat waits."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("the scheduler thread cannot wait for its own batch")
        tickets = [self.submit(row, config, internal=True) for row in rows]
        try:
            return [t.wait() for t in tickets]
        finally:
            for t in tickets:
                if not t.done:
                    self.cancel(t)

    def cancel(self, ticket: Ticket) -> None:
        """Stop ``ticket``'s row at the next step (a disconnected client)."""
        with self._cond:
            ticket.cancel()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="tailorlm-scheduler", daemon=True)
            self._thread.start()

    def _release(self, ticket: Ticket) -> None:
        """Forget a finished/cancelled ticket (caller holds the condition)."""
        self._running.pop(ticket.row_id, None)
        if ticket.key is not None:
            self._per_key[ticket.key] -= 1
            if self._per_key[ticket.key] <= 0:
                del self._per_key[ticket.key]
        seconds = time.monotonic() - ticket.created
        self._seconds_per_request = 0.9 * self._seconds_per_request + 0.1 * seconds

    # -- the decode loop (scheduler thread) -----------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._queue and not self._running:
                    self._cond.wait()
                if self._closed:
                    self._fail_all(ApiError(503, "the server is shutting down", type="server_error"))
                    return
                self._reap()
                if not self._running:
                    self._advanced_at = time.monotonic()  # nobody is waiting for a token
                admit = self._admissible()
            for group in self._prefill_groups(admit):
                rows = [(t.row_id, t.row, t.config) for t in group]
                for t in group:
                    t.prefill_at = time.monotonic()
                self._call(lambda r=rows: self._batch.add_many(r) if len(r) > 1 else self._batch.add(*r[0]), group)
            if self._running and not (admit and self._more_to_admit()):
                self._passes_since_step = 0
                stalled = time.monotonic() - self._advanced_at >= self.max_stall_s
                interrupt = (
                    None if stalled or not self.interrupt_steps else functools.partial(self._arrived, self._submitted)
                )
                self._call(lambda i=interrupt: self._batch.step(interrupt=i), list(self._running.values()))
                if not getattr(self._batch, "interrupted", False):
                    self._advanced_at = time.monotonic()

    def _arrived(self, submitted_before: int) -> bool:
        """Whether the step gives way: a request came after it began and the batch has room (read
        without the condition, before each decoder layer: a stale answer costs time, not tokens)."""
        return self._submitted != submitted_before and len(self._running) < self.max_batch_size

    def _more_to_admit(self) -> bool:
        """Whether to prefill again before decoding (``prefill_first``; module docstring, 3).
        At most ``max_batch_size`` passes in a row: rows that finish at their first token
        leave the batch at once, so a stream of them must not hold the running rows forever."""
        if not self.prefill_first or self._passes_since_step >= self.max_batch_size:
            return False
        with self._cond:
            more = bool(self._queue) and len(self._running) < self.max_batch_size
        self._passes_since_step += more
        return more

    def _reap(self) -> None:
        """Drop cancelled and timed-out rows from the queue and the batch (condition held)."""
        now = time.monotonic()
        for ticket in [*self._queue, *self._running.values()]:
            expired = now > ticket.deadline
            if not (ticket.cancelled or expired):
                continue
            if ticket.row_id in self._running:
                self._batch.remove(ticket.row_id)  # type: ignore[union-attr]
            else:
                self._queue.remove(ticket)
            self._release(ticket)
            if expired and not ticket.cancelled:
                ticket._push(
                    ApiError(
                        504,
                        f"the request took longer than the server's limit of {self.request_timeout_s:g} s "
                        "and was cancelled",
                        type="timeout_error",
                        code="request_timeout",
                    )
                )

    def _admissible(self) -> list[Ticket]:
        """Waiting tickets to prefill now, FIFO (condition held; they move to running)."""
        out: list[Ticket] = []
        budget = self.prefill_tokens
        while self._queue and len(self._running) < self.max_batch_size:
            head = self._queue[0]
            cost = head.prompt_tokens if head.prompt_tokens is not None else self.prefill_tokens
            if out and cost > budget:
                break
            ticket = self._queue.popleft()
            ticket.admitted_at = time.monotonic()
            budget -= cost
            self._running[ticket.row_id] = ticket
            out.append(ticket)
        self._max_batch_seen = max(self._max_batch_seen, len(self._running))
        return out

    def _prefill_groups(self, admit: list[Ticket]) -> list[list[Ticket]]:
        """Who is prefilled with whom: alone, unless ``prefill_together`` and the batch can;
        then all groupable rows in one pass when the batch packs them (no padding), else by
        length, a group growing while its padding stays within ``GROUP_SLACK`` of its tokens
        (one long prompt is not padded onto short ones)."""
        batch = self._batch
        if not self.prefill_together or len(admit) < 2 or not hasattr(batch, "add_many"):
            return [[t] for t in admit]
        fits = {t.row_id: batch.groupable(t.row) for t in admit}  # type: ignore[union-attr]
        alone = [[t] for t in admit if not fits[t.row_id]]
        rest = sorted((t for t in admit if fits[t.row_id]), key=lambda t: t.prompt_tokens or 0)
        packs = getattr(batch, "packs", None)
        if len(rest) > 1 and callable(packs) and packs([t.row for t in rest]):
            return [rest, *alone]  # packed end to end: no padding, whatever their lengths
        groups: list[list[Ticket]] = []
        real = 0  # the last group's real tokens; sorted by length, its newest row is its longest
        for t in rest:
            size = t.prompt_tokens or 1
            if groups and (len(groups[-1]) + 1) * size <= (1 + GROUP_SLACK) * (real + size):
                groups[-1].append(t)
                real += size
            else:
                groups.append([t])
                real = size
        return groups + alone

    def _call(self, fn: Any, tickets: list[Ticket]) -> None:
        """Run one prefill or step under the model lock and deliver its events."""
        try:
            with self.generator.lock:
                events = fn()
        except Exception as exc:  # a failed row must not stop the loop for everyone
            log.exception("generation failed for %d row(s)", len(tickets))
            err = _api_error(exc)
            with self._cond:
                for t in tickets:
                    if self._batch is not None:
                        self._batch.remove(t.row_id)
                    if t.row_id in self._running:
                        self._release(t)
                    t._push(err)
            return
        with self._cond:
            self._steps += 1
            for ev in events:
                ticket = self._running.get(ev.row_id)
                if ticket is None:
                    continue
                if ev.finished:
                    self._release(ticket)
                if ev.error is not None:
                    ticket._push(ApiError(503, ev.error, type="server_error", code="adapter_unloaded"))
                else:
                    ticket._push(ev)

    def _fail_all(self, err: ApiError) -> None:
        for ticket in [*self._queue, *self._running.values()]:
            ticket._push(err)
        self._queue.clear()
        self._running.clear()

    # -- whole requests (generators without a decode batch) ------------------------------------

    def _run_whole(self, ticket: Ticket) -> None:
        try:
            if ticket.cancelled:
                raise ApiError(499, "cancelled")
            with self.generator.lock:
                text = generate_inputs(self.generator.inner, [ticket.row], config=ticket.config)[0]
            tokens = count_text_tokens(self.generator.inner, text)
            reason = "length" if tokens >= ticket.config.max_new_tokens else "stop"
            event: RowEvent | BaseException = RowEvent(ticket.row_id, text, True, reason, text, tokens)
        except Exception as exc:
            event = _api_error(exc)
        with self._cond:
            self._release(ticket)
        ticket._push(event)


def _api_error(exc: Exception) -> Exception:
    """What the waiting route raises: a backend outage is a 502, a bad row (an unknown
    adapter) a 400; anything else is raised as it is, for the app's catch-all (a 500 that
    names only the exception's class)."""
    if isinstance(exc, BackendError):
        return ApiError(502, f"the model backend failed: {exc}", type="server_error")
    if isinstance(exc, ValueError):
        return ApiError(400, str(exc))
    return exc


async def until_disconnect(request: Any, work: Any, scheduler: Scheduler, tickets: list[Ticket]) -> Any:
    """Await ``work``; if the client disconnects first, cancel ``tickets``' rows instead.

    For routes that answer once (Starlette cancels only streaming responses on a disconnect).
    The request body has been read, so the next ASGI message is ``http.disconnect``."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        for ticket in tickets:
            scheduler.cancel(ticket)
        raise ApiError(499, "the client closed the connection")
    return task.result()
