"""A suite's training step: the adapters its parametric rows need, trained before the rows run.

A suite lists ``[[train]]`` entries (method, scope, task, how many users); this module
turns them into :class:`~tailorlm.personalize.training.jobs.TrainJob`s that respect the suite's split and
runs them through a resumable :class:`~tailorlm.personalize.training.queue.TrainQueue` in the bench's
work folder, so a killed run picks up where it stopped and a rerun trains nothing.

The split decides who may be learned from, exactly as for the non-parametric rows:

- global and persona adapters learn only from the task's *population* (the users no row
  of the suite evaluates: the split of the largest row of the task, so no held-out user
  of any row is ever in the training data);
- a user adapter is trained for each of the first ``users`` held-out users (the same
  nested sample the rows use), on their examples strictly before their query;
- a LoRA entry with ``config = { history = "rag-bm25", history_k = 4 }`` trains on prompts
  that quote each example's earlier history of the same user, rendered as the rows render
  it (the suite's ``budget_tokens`` included); rows select it with the lora part's
  overrides ``{ history = "rag-bm25", history_k = 4 }`` (see ``personalize/training/history.py``);
- DPO pairs are derived first (:func:`~tailorlm.personalize.training.pairs.derive_pairs`): the user's
  own title against another population user's title of a similar, earlier review.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailorlm.eval.splits import make_split
from tailorlm.personalize.training.data import is_held_out_latest
from tailorlm.personalize.training.jobs import SCOPES

__all__ = ["TrainSpec", "plan_jobs", "run_training"]


@dataclass(frozen=True)
class TrainSpec:
    """One ``[[train]]`` entry: ``users`` held-out users (scope user) or their personas (persona)."""

    method: str
    scope: str
    task: str
    users: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"train.scope must be one of {SCOPES}, got {self.scope!r}")
        if self.scope in ("user", "persona") and self.users < 1:
            raise ValueError(f"'users' must be >= 1 for scope {self.scope!r} (how many held-out users to train for)")


def _task_sizes(suite: Any) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for row in suite.rows:
        sizes[row.task] = max(sizes.get(row.task, 0), row.users)
    for spec in suite.train:
        sizes[spec.task] = max(sizes.get(spec.task, 0), spec.users)
    return sizes


def plan_jobs(suite: Any, store: Any, *, embedder: Any = None) -> tuple[list[Any], dict[str, tuple[str, ...]]]:
    """The jobs for ``suite.train`` and, per task, the population they may learn from."""
    from tailorlm.personalize.granularity import Granularity
    from tailorlm.personalize.training.jobs import TrainJob

    sizes = _task_sizes(suite)
    populations: dict[str, tuple[str, ...]] = {}
    jobs: list[TrainJob] = []
    for spec in suite.train:
        if spec.task not in populations:
            widest, _ = make_split(store, spec.task, kind=suite.split, n_users=sizes[spec.task], seed=suite.seed)
            # A time split's population is every user, their queries included: shared models
            # learn only from users no row evaluates, as under the user split.
            evaluated = {u for u, _ in widest.queries} if widest.kind == "time" else set()
            evaluated |= _validation_users(suite, store, spec.task, sizes[spec.task])
            populations[spec.task] = tuple(u for u in widest.population if u not in evaluated)
        population = populations[spec.task]
        config = dict(spec.config)
        if config.get("history") is not None:  # RAG fine-tuning: prompts rendered under the rows' budget
            config.setdefault("history_budget", suite.budget_tokens)
        if spec.scope == "global":
            jobs.append(TrainJob(spec.method, "global", "", spec.task, config))
            continue
        _, queries = make_split(store, spec.task, kind=suite.split, n_users=spec.users, seed=suite.seed)
        if spec.scope == "user":
            # Rows also run on validation users (to choose among variants, e.g. steps and lr):
            # they get their own adapters the same way, from their data before their query.
            for (user, _), ex in sorted((queries | _validation_queries(suite, store, spec)).items()):
                # Strictly before the user's query: never the query itself, never its future.
                if ex.timestamp is None and not is_held_out_latest(store, ex):
                    continue  # undated and not the latest: "all but the latest" would include it
                cut = {"before": ex.timestamp} if ex.timestamp is not None else {}
                jobs.append(TrainJob(spec.method, "user", user, spec.task, config | cut))
            continue
        persona_by = config.setdefault("persona_by", "cluster")
        gran = Granularity(persona_by=persona_by, embedder=embedder).fit(store, list(population))
        personas = sorted(
            {p for (user, _), ex in queries.items() if (p := gran.persona_of(user, before=ex.timestamp)) is not None}
        )
        jobs.extend(TrainJob(spec.method, "persona", p, spec.task, config) for p in personas)
    return jobs, populations


def _validation_queries(suite: Any, store: Any, spec: TrainSpec) -> dict[tuple[str, str], Any]:
    """The validation queries of ``spec.task`` that rows of up to ``spec.users`` users run on:
    the same call as the rows' validation split (eval.suite._run_row), so the same users."""
    n = min(spec.users, getattr(suite, "validation_users", 0))
    if not n:
        return {}
    reserve = suite.reserve(spec.task)
    _, queries = make_split(
        store, spec.task, kind=suite.split, n_users=n, seed=suite.seed, role="validation", reserve=reserve
    )
    return queries


def _validation_users(suite: Any, store: Any, task: str, reserve: int) -> set[str]:
    """The users a suite validates its rows on: shared adapters must not learn from them
    either, or validation would score rows on their own training data."""
    n = getattr(suite, "validation_users", 0)
    if not n:
        return set()
    split, _ = make_split(store, task, kind=suite.split, n_users=n, seed=suite.seed, role="validation", reserve=reserve)
    return {u for u, _ in split.queries}


def _derive_pairs(jobs: list[Any], store: Any, populations: Mapping[str, tuple[str, ...]], generator: Any) -> None:
    from tailorlm.personalize.training.pairs import PairConfig, derive_pairs

    for task in sorted({j.task for j in jobs if j.method == "dpo"}):
        users = sorted({j.owner for j in jobs if j.method == "dpo" and j.task == task and j.scope == "user"})
        if users:
            derive_pairs(
                store,
                users,
                population=populations[task],
                config=PairConfig(task=task, base_output=generator is not None),
                generator=generator,
            )


def run_training(
    suite: Any,
    store: Any,
    *,
    generator: Any,
    embedder: Any,
    work: Path,
    log: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
    executor: Any | None = None,
) -> list[dict[str, Any]]:
    """Train what ``suite.train`` asks for (resumably) and summarize every adapter it names.

    ``executor``: where the queue's jobs run (None: in this process; a RayExecutor: Ray actors
    that open this store themselves). Either way the queue in ``work`` records what finished.
    """
    from tailorlm.adapters.registry import AdapterRegistry
    from tailorlm.models.base import model_fingerprint
    from tailorlm.personalize.training.jobs import TrainContext
    from tailorlm.personalize.training.queue import TrainQueue

    base = getattr(generator, "generator", generator)  # the model itself, not the generation cache
    jobs, populations = plan_jobs(suite, store, embedder=embedder)
    registry = AdapterRegistry(store, base_model=model_fingerprint(base))
    queue = TrainQueue(work / "train_queue.sqlite")
    try:
        ids = set(queue.add(jobs))
        pending = [j for j in queue.jobs() if j.id in ids and j.status in ("pending", "running")]
        if pending:
            _derive_pairs([q.job for q in pending], store, populations, base)
        by_task = {t: list(p) for t, p in populations.items()}

        def on_job(qj: Any, i: int, n: int) -> None:
            job = qj.job
            ctx.users = by_task.get(job.task)
            log(f"training {i}/{n}: {job.method} {job.scope} {job.owner or '-'} {job.task}")
            if progress is not None:
                progress("training", i - 1, n)

        ctx = TrainContext(store=store, registry=registry, generator=base, embedder=embedder)
        counts = queue.run(ctx, progress=on_job, executor=executor)
        log(f"training: {counts}")
        return [_summary(qj, registry) for qj in queue.jobs() if qj.id in ids]
    finally:
        queue.close()


def _summary(qj: Any, registry: Any) -> dict[str, Any]:
    job = qj.job
    out: dict[str, Any] = {
        "method": job.method,
        "scope": job.scope,
        "owner": job.owner,
        "task": job.task,
        "status": qj.status,
        "error": qj.error,
        "adapter": qj.adapter,
    }
    records = registry.list(method=job.method, scope=job.scope, owner=job.owner, task=job.task)
    rec = next((r for r in records if r.name == qj.adapter), None)
    if rec is not None and qj.status == "done":
        meta = rec.meta
        curve = meta.get("loss_curve") or []
        out |= {
            "name": rec.name,
            "steps": meta.get("steps"),
            "seconds": meta.get("seconds"),
            "examples": meta.get("examples", meta.get("pairs")),
            "tokens": meta.get("tokens"),
            "size_bytes": meta.get("size_bytes"),
            "loss_first": curve[0] if curve else None,
            "loss_last": curve[-1] if curve else None,
        }
    return out
