"""A suite's evaluation rows on Ray actors: ``tailorlm bench --executor ray``.

Why actors: a row that uses the model costs a model load (seconds, hundreds of MB) before
its first query, so each :class:`_RowWorker` builds its :class:`~tailorlm.eval.suite.SuiteEnv`
once, from a picklable recipe (:class:`RowEnvRecipe`: the settings and the bench's paths,
not live objects), and then evaluates one row per call, exactly as :func:`run_suite` does in
process (the same ``_run_row``: same split, seed, validation run and uncertainty).

Who owns state: the driver. It decides which rows are reused (by fingerprint), hands the
others to idle actors and writes ``results.json`` (rows in suite order) as each comes back,
so an interrupted run keeps its finished rows and a rerun computes only the rest. Workers
read the bench's store and share its generation and embedding caches (SQLite files, one
writer at a time); they write nothing else.

Failures: a worker process that dies is restarted by Ray and its row retried
(``max_restarts`` / ``max_task_retries``); a row that raises fails the run, as it does in
process. Ray is optional (``pip install 'tailorlm[ray]'``) and imported only when a run starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailorlm.personalize.training.ray_executor import RayActors

if TYPE_CHECKING:
    from tailorlm.eval.suite import SuiteConfig, SuiteEnv
    from tailorlm.settings import Settings

__all__ = ["RayRowExecutor", "RowEnvRecipe"]


@dataclass(frozen=True)
class RowEnvRecipe:
    """A picklable recipe for a worker's SuiteEnv: the bench's store and caches, and the
    settings' models (built on first use, so model-free rows never load them)."""

    settings: Settings
    store_url: str
    files_dir: str | None = None
    generations: str | None = None  # the bench's generations.sqlite
    embeddings: str | None = None  # the bench's embeddings.sqlite
    refresh: bool = False

    def __call__(self) -> SuiteEnv:
        from tailorlm.data import Store
        from tailorlm.eval.cache import CachedEmbedder, CachedGenerator
        from tailorlm.eval.suite import SuiteEnv
        from tailorlm.models import build_embedder, build_generator

        settings = self.settings
        store = Store(self.store_url, files_dir=Path(self.files_dir) if self.files_dir else None)

        def generator() -> Any:
            gen = build_generator(settings)
            return CachedGenerator(gen, Path(self.generations), refresh=self.refresh) if self.generations else gen

        def embedder() -> Any:
            emb = build_embedder(settings)
            return CachedEmbedder(emb, Path(self.embeddings)) if self.embeddings else emb

        return SuiteEnv(store, generator_factory=generator, embedder_factory=embedder)


class _RowWorker:
    """The body of one Ray actor: an environment built once, then one row per ``run`` call."""

    def __init__(self, recipe: Any, threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.env = recipe()
        self.pid = os.getpid()

    def run(self, suite: SuiteConfig, index: int, head: dict[str, Any]) -> dict[str, Any]:
        from tailorlm.eval.suite import _run_row

        return _run_row(suite, suite.rows[index], self.env, head, None)

    def ping(self) -> int:
        return self.pid


@dataclass
class RayRowExecutor(RayActors):
    """Evaluates rows on ``workers`` Ray actors, yielding each result as it comes back.

    ``recipe``: a :class:`RowEnvRecipe` (picklable; :meth:`for_bench` points it at the bench's
    store and caches); where and how the actors run: :class:`~tailorlm.personalize.training.ray_executor.RayActors`.
    """

    recipe: RowEnvRecipe

    def for_bench(self, *, store: Any, work: Path, refresh: bool) -> RayRowExecutor:
        """This executor with workers opening the bench's own store and caches (which exist
        only once the bench has started)."""
        from dataclasses import replace

        recipe = replace(
            self.recipe,
            store_url=store.url,
            files_dir=str(store.files_dir),
            generations=str(work / "generations.sqlite"),
            embeddings=str(work / "embeddings.sqlite"),
            refresh=refresh,
        )
        return replace(self, recipe=recipe)

    def run(
        self, suite: SuiteConfig, jobs: Sequence[tuple[int, dict[str, Any]]]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row index, result) for every ``(row index, head)`` job, in the order they finish."""
        if not jobs:
            return
        with self.actors(_RowWorker, self.recipe, min(self.workers, len(jobs))) as (ray, actors):
            yield from _dispatch(ray, actors, suite, jobs)


def _dispatch(
    ray: Any, actors: list[Any], suite: SuiteConfig, jobs: Sequence[tuple[int, dict[str, Any]]]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Keep every actor busy until the rows run out; a row's error (after Ray's retries of a
    dead worker) is raised here, as the in-process loop would raise it."""
    idle, todo = list(actors), list(jobs)[::-1]  # popped from the end: suite order
    in_flight: dict[Any, tuple[int, Any]] = {}
    while todo or in_flight:
        while idle and todo:
            index, head = todo.pop()
            actor = idle.pop()
            in_flight[actor.run.remote(suite, index, head)] = (index, actor)
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        index, actor = in_flight.pop(ref)
        result = ray.get(ref)
        idle.append(actor)
        yield index, result
