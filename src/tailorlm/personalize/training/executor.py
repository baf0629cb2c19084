"""Who runs a queue's jobs: the seam between the queue's state and where training happens.

Why a seam: the resumable queue (:mod:`~tailorlm.personalize.training.queue`) decides *what*
runs (pending, interrupted and, on request, failed jobs) and records every job's state; an
:class:`Executor` only decides *where* each job's trainer runs. :class:`LocalExecutor` is
today's in-process loop (the default); :class:`~tailorlm.personalize.training.ray_executor.RayExecutor`
runs the same trainers in Ray actors. Both report through the same two callbacks, so the
queue stays the single source of truth and a rerun after any kill skips finished jobs,
whichever executor ran them.

A job carries its population (``users``), excluded users and rebuild note as read from the
driver's :class:`~tailorlm.personalize.training.jobs.TrainContext` right after ``start``
(the queue's progress callback may set them per job), so a remote worker trains exactly
what the in-process loop would.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob

__all__ = ["Executor", "JobOutcome", "JobScope", "LocalExecutor", "error_text", "run_job", "trainer_or_fail"]


class QueuedJob(Protocol):
    """What an executor needs of a queued job (the queue's QueuedJob; no import: no cycle)."""

    @property
    def id(self) -> str: ...
    @property
    def job(self) -> TrainJob: ...


StartFn = Callable[["QueuedJob", int], None]
FinishFn = Callable[["QueuedJob", "JobOutcome"], None]


@dataclass(frozen=True)
class JobOutcome:
    """What one job produced: the registered adapter's name, or the error text; and its time."""

    adapter: str | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class JobScope:
    """The per-job part of a TrainContext that must travel with a job to a remote worker."""

    users: tuple[str, ...] | None = None
    exclude: frozenset[str] = frozenset()
    rebuild: dict[str, Any] | None = None

    @classmethod
    def of(cls, ctx: TrainContext) -> JobScope:
        users = None if ctx.users is None else tuple(ctx.users)
        return cls(users, frozenset(ctx.exclude), None if ctx.rebuild is None else dict(ctx.rebuild))

    def apply(self, ctx: TrainContext) -> None:
        """Set this scope on a worker's own context (its store, registry and model stay)."""
        ctx.users = None if self.users is None else list(self.users)
        ctx.exclude = self.exclude
        ctx.rebuild = self.rebuild


def error_text(exc: BaseException) -> str:
    """The one line a failed job keeps: the exception's type and message."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def run_job(trainer: Callable[..., Any], job: TrainJob, ctx: TrainContext) -> JobOutcome:
    """Run one trainer; any ``Exception`` becomes the outcome's error text (the batch goes on).

    ``KeyboardInterrupt`` and other ``BaseException`` propagate: the queue puts the job back
    to pending and stops, as a Ctrl-C should.
    """
    start = time.perf_counter()
    try:
        record = trainer(job, ctx)
    except Exception as exc:  # recorded per job
        return JobOutcome(None, error_text(exc), time.perf_counter() - start)
    return JobOutcome(record.name, None, time.perf_counter() - start)


class Executor(Protocol):
    """Runs ``jobs`` (in order of dispatch) and reports each one.

    ``start(job, i)`` must be called right before job ``i`` (1-based) is dispatched (the
    queue marks it running and may set ``ctx.users`` for it); ``finish(job, outcome)`` once
    it has an outcome. An executor may raise (a Ctrl-C, every worker lost): jobs started
    and not finished are then put back to pending by the queue.
    """

    def run(self, jobs: Sequence[QueuedJob], ctx: TrainContext, *, start: StartFn, finish: FinishFn) -> None: ...


class LocalExecutor:
    """Every job in this process, one after another, on ``ctx``'s already loaded model."""

    def run(self, jobs: Sequence[QueuedJob], ctx: TrainContext, *, start: StartFn, finish: FinishFn) -> None:
        for i, qj in enumerate(jobs, 1):
            start(qj, i)
            if (trainer := trainer_or_fail(qj, finish)) is not None:
                finish(qj, run_job(trainer, qj.job, ctx))


def trainer_or_fail(qj: QueuedJob, finish: FinishFn) -> Any | None:
    """The job's registered trainer; an unknown method is recorded as the job's failure (None)."""
    from tailorlm.personalize.registry import get_trainer

    try:
        return get_trainer(qj.job.method)
    except KeyError as exc:
        finish(qj, JobOutcome(None, error_text(exc), 0.0))
        return None
