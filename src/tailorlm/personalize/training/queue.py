"""A resumable queue of training jobs in one SQLite file.

Why: per-user training takes seconds to minutes per user on CPU, so it runs as a
background batch (``tailorlm train queue``), never in the request path; a batch of
hundreds of users must survive a kill or a crash. Each job's state (pending, running,
done, failed + error text) is committed before and after it runs, so a restart
retrains nothing that finished and retries what was interrupted. Jobs are identified
by their content (method, scope, owner, task, config), so adding the same job twice
is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailorlm.personalize.training.executor import Executor, JobOutcome, LocalExecutor
from tailorlm.personalize.training.jobs import TrainContext, TrainJob

__all__ = ["DEFAULT_QUEUE_FILE", "QueuedJob", "TrainQueue"]

STATUSES = ("pending", "running", "done", "failed")
DEFAULT_QUEUE_FILE = "train-queue.sqlite"  # in cache_dir: `tailorlm train queue` without --queue-file


@dataclass(frozen=True)
class QueuedJob:
    id: str
    job: TrainJob
    status: str
    error: str | None = None
    adapter: str | None = None  # the registered adapter's name once done
    seconds: float | None = None


def _job_id(job: TrainJob) -> str:
    return hashlib.sha256(json.dumps(job.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


class TrainQueue:
    """Jobs persisted at ``path`` (SQLite). One runner at a time per file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, seq INTEGER, job TEXT, status TEXT,"
            " error TEXT, adapter TEXT, seconds REAL, updated REAL)"
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, jobs: Iterable[TrainJob]) -> list[str]:
        """Queue ``jobs`` (already queued ones keep their state); their ids in order."""
        ids = []
        with self._lock:
            (seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()
            for job in jobs:
                if not isinstance(job, TrainJob):
                    raise TypeError(f"TrainQueue.add expects TrainJob objects, got {type(job).__name__}")
                jid = _job_id(job)
                seq += 1
                self._db.execute(
                    "INSERT OR IGNORE INTO jobs (id, seq, job, status, updated) VALUES (?, ?, ?, 'pending', ?)",
                    (jid, seq, json.dumps(job.to_dict(), default=str), time.time()),
                )
                ids.append(jid)
        return ids

    def jobs(self, status: str | None = None) -> list[QueuedJob]:
        """Queued jobs in the order they were added, optionally of one status."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        q = "SELECT id, job, status, error, adapter, seconds FROM jobs"
        rows = self._db.execute(
            q + (" WHERE status = ?" if status else "") + " ORDER BY seq", (status,) if status else ()
        )
        return [QueuedJob(r[0], TrainJob.from_dict(json.loads(r[1])), r[2], r[3], r[4], r[5]) for r in rows]

    def forget_user(self, user_id: str) -> int:
        """Remove ``user_id``'s own jobs (scope user) whatever their state; how many. A deleted
        user's name, configs and error texts must not outlive the user here. Persona and global
        jobs stay: the store marks what they trained as stale, and retraining rebuilds it."""
        with self._lock:
            ids = [
                jid
                for jid, job in self._db.execute("SELECT id, job FROM jobs")
                if (d := json.loads(job))["scope"] == "user" and d["owner"] == user_id
            ]
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(jid,) for jid in ids])
        return len(ids)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
            out[status] = n
        return out

    def _set(self, jid: str, status: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(
            f"UPDATE jobs SET status = ?, updated = ?{', ' + cols if cols else ''} WHERE id = ?",
            (status, time.time(), *fields.values(), jid),
        )

    def run(
        self,
        ctx: TrainContext,
        *,
        progress: Callable[[QueuedJob, int, int], None] | None = None,
        retry_failed: bool = False,
        limit: int | None = None,
        executor: Executor | None = None,
    ) -> dict[str, int]:
        """Train every pending job (and interrupted 'running' ones; failed ones with
        ``retry_failed``) in order. A failure is recorded with its error and the queue
        moves on. ``progress(job, i, n)`` is called before each job is dispatched.
        ``executor`` says where trainers run (default: :class:`LocalExecutor`, in this
        process); whichever it is, this queue records every state change, so a rerun
        after a kill skips what finished. Returns counts."""
        todo_states = {"pending", "running"} | ({"failed"} if retry_failed else set())
        todo = [j for j in self.jobs() if j.status in todo_states]
        if limit is not None:
            todo = todo[:limit]
        in_flight: set[str] = set()

        def start(qj: QueuedJob, i: int) -> None:
            in_flight.add(qj.id)
            self._set(qj.id, "running", error=None)
            if progress is not None:
                progress(qj, i, len(todo))

        def finish(qj: QueuedJob, outcome: JobOutcome) -> None:
            in_flight.discard(qj.id)
            if outcome.ok:
                self._set(qj.id, "done", adapter=outcome.adapter, seconds=outcome.seconds)
            else:
                self._set(qj.id, "failed", error=outcome.error, seconds=outcome.seconds)

        try:
            (executor or LocalExecutor()).run(todo, ctx, start=start, finish=finish)
        except BaseException:  # Ctrl-C, every worker lost: what did not finish runs again next time
            for jid in in_flight:
                self._set(jid, "pending")
            raise
        return self.counts()
