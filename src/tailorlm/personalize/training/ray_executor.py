"""Ray as the executor of a training queue: the same trainers, in Ray actors.

Why actors, not one task per job: loading the base model costs seconds and hundreds of
MB, a LoRA job on a small model costs about as much. Each :class:`_TrainWorker` actor
builds its context (store, adapter registry, base model) **once**, from a picklable
factory (:class:`SettingsContext`: the settings, not live objects), and then takes jobs.

Who owns state: the driver. It pulls jobs from the :class:`~tailorlm.personalize.training.queue.TrainQueue`
(SQLite, the single source of truth), marks each one running when it hands it to an idle
actor and done/failed when the result comes back. Workers write adapters through their
own :class:`~tailorlm.adapters.AdapterRegistry` on the same store, exactly as in-process
jobs do; the queue file never leaves the driver, so workers on other nodes need only the
store (use PostgreSQL and a shared files folder for several nodes; one SQLite file serves
every worker of one machine).

Failures: a worker process that dies (OOM, segfault, ``kill``) is restarted by Ray
(``max_restarts``; the new process rebuilds its context) and the job retried on it
(``max_task_retries``). A job whose worker keeps dying is recorded as failed and the
actor dropped; with no actor left the run raises and unfinished jobs go back to pending.
Killing the driver kills its actors (they are owned by it); the queue still says which
jobs finished, so a rerun trains only the rest (a job that registered its adapter just
before the kill, but was not yet marked done, is trained again and replaces it).

Threads: on a machine shared by ``n`` workers each one gets ``cpu_count // n`` torch threads
(``threads_per_worker`` overrides), so two workers on two cores do not oversubscribe them.

Ray is optional (``pip install 'tailorlm[ray]'``) and imported only when a run starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailorlm.errors import ConfigError
from tailorlm.personalize.training.executor import (
    FinishFn,
    JobOutcome,
    JobScope,
    QueuedJob,
    StartFn,
    error_text,
    run_job,
    trainer_or_fail,
)

if TYPE_CHECKING:
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob
    from tailorlm.settings import Settings

__all__ = ["RayActors", "RayExecutor", "SettingsContext", "import_ray"]


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError that names the extra to install."""
    try:
        import ray
    except ImportError as exc:  # optional dependency
        raise ConfigError("the Ray executor needs Ray: pip install 'tailorlm[ray]' (or drop --executor ray)") from exc
    return ray


@dataclass(frozen=True)
class SettingsContext:
    """A picklable recipe for a worker's TrainContext: settings in, store + model out.

    ``store_url`` / ``files_dir`` default to the settings' store and ``<cache>/files``;
    ``embedder`` is a picklable zero-argument factory (default: the configured embedder,
    built on first use, so LoRA and DPO workers never load it).
    """

    settings: Settings
    store_url: str | None = None
    files_dir: str | None = None
    embedder: Callable[[], Any] | None = None

    def __call__(self) -> TrainContext:
        from tailorlm.adapters import AdapterRegistry
        from tailorlm.data import Store
        from tailorlm.models import build_embedder, build_generator
        from tailorlm.models.base import AdapterGenerator, model_fingerprint
        from tailorlm.models.embedders import LazyEmbedder
        from tailorlm.personalize.training.jobs import TrainContext

        settings = self.settings
        files = Path(self.files_dir) if self.files_dir else Path(settings.cache_dir) / "files"
        store = Store(self.store_url or settings.resolved_store_url, files_dir=files)
        generator = build_generator(settings)
        if not isinstance(generator, AdapterGenerator):
            raise ConfigError("training needs the local backend (generator.backend = 'local')")
        registry = AdapterRegistry(store, base_model=model_fingerprint(generator))
        embedder = LazyEmbedder(self.embedder or (lambda: build_embedder(settings)))
        return TrainContext(store, registry, generator, embedder=embedder)  # type: ignore[arg-type]


class _TrainWorker:
    """The body of one Ray actor: a context built once, then one job per ``run`` call."""

    def __init__(self, make_context: Callable[[], TrainContext], threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.ctx = make_context()
        self.pid = os.getpid()

    def run(self, trainer: Callable[..., Any], job: TrainJob, scope: JobScope) -> JobOutcome:
        scope.apply(self.ctx)
        return run_job(trainer, job, self.ctx)

    def ping(self) -> int:
        return self.pid


@dataclass(kw_only=True)
class RayActors:
    """Where actors run and how they survive, shared by the training and the evaluation executors.

    ``address``: the cluster to join (``"auto"``, or ``ray://host:10001``); None starts a
    local one, unless Ray is already initialized in this process, which is then reused (and
    not shut down). ``cpus_per_worker``: the Ray resource each actor holds. A dead worker
    process is restarted ``max_restarts`` times and its call retried ``max_task_retries``
    times. ``init_kwargs`` go to ``ray.init`` (e.g. ``runtime_env``).
    """

    workers: int = 2
    address: str | None = None
    threads_per_worker: int | None = None
    cpus_per_worker: float = 1.0
    max_restarts: int = 2
    max_task_retries: int = 2
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"{type(self).__name__}.workers must be >= 1, got {self.workers}")

    def threads(self) -> int:
        """Torch threads per worker: given, or this machine's cores shared out among the workers."""
        return self.threads_per_worker or max(1, (os.cpu_count() or 1) // self.workers)

    def _init(self, ray: Any) -> bool:
        """Connect to (or start) a cluster; True when this call started it (and must stop it)."""
        if ray.is_initialized():
            return False
        kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
        ray.init(address=self.address, **kwargs)
        return True

    @contextlib.contextmanager
    def actors(self, body: type, recipe: Any, n: int) -> Iterator[tuple[Any, list[Any]]]:
        """(ray, ``n`` actors running ``body(recipe, threads)``), restarted by Ray when their
        process dies; killed on exit, and the cluster stopped if this call started it."""
        ray = import_ray()
        owned = self._init(ray)
        remote = ray.remote(body).options(
            num_cpus=self.cpus_per_worker, max_restarts=self.max_restarts, max_task_retries=self.max_task_retries
        )
        started = [remote.remote(recipe, self.threads()) for _ in range(n)]
        try:
            yield ray, started
        finally:
            for actor in started:
                ray.kill(actor, no_restart=True)
            if owned:
                ray.shutdown()


@dataclass
class RayExecutor(RayActors):
    """Runs a queue's jobs on ``workers`` Ray actors (see the module docstring for why).

    ``make_context``: a picklable zero-argument callable building a worker's TrainContext
    (e.g. :class:`SettingsContext`); the rest: :class:`RayActors`.
    """

    make_context: Callable[[], TrainContext]

    def run(self, jobs: Sequence[QueuedJob], ctx: TrainContext, *, start: StartFn, finish: FinishFn) -> None:
        """Hand jobs to idle actors in queue order, record each result as it comes back."""
        if not jobs:
            return
        with self.actors(_TrainWorker, self.make_context, min(self.workers, len(jobs))) as (ray, actors):
            _dispatch(ray, actors, jobs, ctx, start=start, finish=finish)


# long: the whole dispatch loop (hand out, wait, record, drop dead actors) reads best in one piece
def _dispatch(
    ray: Any, actors: list[Any], jobs: Sequence[QueuedJob], ctx: TrainContext, *, start: StartFn, finish: FinishFn
) -> None:
    """Keep every live actor busy until the jobs run out; an actor whose job failed with a
    dead worker (retries exhausted) is dropped, and the run raises when none is left."""
    idle = list(actors)
    todo = list(enumerate(jobs, 1))[::-1]  # popped from the end: queue order
    in_flight: dict[Any, tuple[QueuedJob, Any]] = {}
    last_death: str | None = None
    while todo or in_flight:
        while idle and todo:
            i, qj = todo.pop()
            start(qj, i)
            if (trainer := trainer_or_fail(qj, finish)) is None:
                continue
            actor = idle.pop()
            in_flight[actor.run.remote(trainer, qj.job, JobScope.of(ctx))] = (qj, actor)
        if not in_flight:
            if todo:
                raise RuntimeError(f"every Ray worker died; the last error: {last_death}")
            break
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        qj, actor = in_flight.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # the worker died and Ray's retries ran out
            last_death = error_text(exc).splitlines()[0]
            finish(qj, JobOutcome(None, f"worker died: {last_death}", 0.0))
            continue  # the actor is not returned to the pool
        except ray.exceptions.RayError as exc:
            outcome = JobOutcome(None, error_text(exc), 0.0)
        idle.append(actor)
        finish(qj, outcome)
