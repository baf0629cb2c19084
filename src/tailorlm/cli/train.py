"""``tailorlm train ...``: train adapters (LoRA, DPO, ...) offline; never in the request path.

``tailorlm train`` alone trains one adapter; ``queue`` runs a resumable queue of per-user jobs,
``pairs`` derives DPO preference pairs from the users' data, ``list`` shows the registry (with
each adapter's provenance and stale mark) and ``retrain-stale`` rebuilds the artifacts that
learned from since-deleted users, without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tailorlm.cli._common import console, err, get_settings, open_store
from tailorlm.cli._training import (
    TrainPopulation,
    population_for,
    provenance_cell,
    queue_executor,
    retrain_table,
    run_retrain,
    train_config,
    train_context,
    user_cut,
)

if TYPE_CHECKING:
    from tailorlm.data import Store
    from tailorlm.personalize.training.jobs import TrainJob

train_app = typer.Typer(
    help="Train adapters (LoRA, DPO, ...) offline: one job, a resumable queue, or list the registry.",
    invoke_without_command=True,
)

_TrainMethod = Annotated[str, typer.Option(help="a registered method with a trainer, e.g. lora, dpo, softprompt")]
_TrainScope = Annotated[str, typer.Option(help="user | persona | global")]
_TrainSplit = Annotated[
    str, typer.Option(help="the split `tailorlm run` will evaluate: auto | user | time | given; its users are left out")
]
_TrainSeed = Annotated[int, typer.Option(help="split seed (as `tailorlm run --seed`); also seeds --users sampling")]
_EvalUsers = Annotated[
    int, typer.Option(help="users `tailorlm run --users` will evaluate (the largest you will use); left out")
]
_TrainOpt = Annotated[
    list[str] | None, typer.Option("--option", "-O", help="extra trainer option KEY=VALUE (JSON values allowed)")
]


@train_app.callback()
def train(
    ctx: typer.Context,
    method: _TrainMethod = "lora",
    scope: _TrainScope = "user",
    user: Annotated[str | None, typer.Option(help="user id (scope user)")] = None,
    persona: Annotated[str | None, typer.Option(help="persona id 'attribute=value' (scope persona)")] = None,
    task: Annotated[str | None, typer.Option(help="task, e.g. amazon-title, amazon-rating")] = None,
    users: Annotated[
        int | None, typer.Option(help="persona/global scope: sample N users of the training population (seeded)")
    ] = None,
    split: _TrainSplit = "auto",
    seed: _TrainSeed = 0,
    eval_users: _EvalUsers = 50,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    r: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    batch_size: Annotated[int | None, typer.Option(help="examples per step")] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per example")] = None,
    init_from: Annotated[str | None, typer.Option(help="'global': start a user adapter from the global one")] = None,
    balanced: Annotated[bool, typer.Option(help="class-balanced sampling (label tasks)")] = False,
    option: _TrainOpt = None,
) -> None:
    """Train one adapter (e.g. --method lora --scope user --user U --task amazon-title --steps 20)."""
    if ctx.invoked_subcommand is not None:
        return
    from tailorlm.personalize.registry import get_trainer
    from tailorlm.personalize.training.jobs import TrainJob

    if task is None:
        err.print("[red]--task is required (e.g. --task amazon-title)[/red]")
        raise typer.Exit(2)
    owner = {"user": user, "persona": persona}.get(scope) or ""
    config = train_config(steps, lr, r, batch_size, max_length, init_from, balanced, option)
    try:
        job = TrainJob(method=method, scope=scope, owner=owner, task=task, config=config)
        trainer = get_trainer(method)
    except (ValueError, KeyError) as exc:
        err.print(f"[red]{exc}[/red] (scope user needs --user, scope persona needs --persona)")
        raise typer.Exit(2) from None
    store = open_store(ctx)
    plan = _plan(store, task, scope, split=split, eval_users=eval_users, seed=seed, users=users)
    try:
        job = _leak_free(store, plan, job)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    population = list(plan.users) if plan is not None and scope != "user" else None
    record = _train_one(ctx, store, population, job, trainer)
    curve = record.meta.get("loss_curve") or [float("nan")]
    console.print(
        f"registered [bold]{record.name}[/bold] ({record.meta.get('size_bytes', 0) / 1e6:.2f} MB, "
        f"{record.meta.get('steps')} steps, loss {curve[0]:.4f} -> {curve[-1]:.4f}, "
        f"{record.meta.get('seconds', 0):.1f} s) at {record.path}"
    )


def _plan(
    store: Store, task: str, scope: str, *, split: str, eval_users: int, seed: int, users: int | None
) -> TrainPopulation | None:
    """The split-derived population for ``task``, said on stderr; None when no split is possible.

    Global and persona jobs learn only from the split's training population (never
    ``store.list_users()``, which holds every dataset's users, evaluated ones included), so
    for them an impossible split exits with 2. User jobs go on without one: when no split
    is possible ``tailorlm run`` cannot evaluate anyone either.
    """
    try:
        plan = population_for(store, task, split=split, eval_users=eval_users, seed=seed, users=users)
    except ValueError as exc:
        if scope != "user":
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        err.print(f"no evaluation split ({exc}); user adapters learn from all but the user's latest example")
        return None
    if scope != "user":
        if users is not None and users > plan.available:
            err.print(f"[yellow]--users {users}: the training population has only {plan.available}[/yellow]")
        err.print(plan.describe())
    return plan


def _leak_free(store: Store, plan: TrainPopulation | None, job: TrainJob) -> TrainJob:
    """``job`` with its user's evaluation queries cut off (user scope); says which cut it applied.

    Raises:
        ValueError: the user's query cannot be held out (see :func:`user_cut`).
    """
    if job.scope != "user" or plan is None:
        return job
    config = user_cut(store, plan, job.owner, job.config)
    where = f"the {plan.kind} split (seed {plan.seed}, --eval-users {plan.eval_users})"
    if job.owner in plan.queries:
        cut = f"before {config['before']}" if config.get("before") is not None else "except their latest example"
        err.print(f"user {job.owner!r} is evaluated by {where}: training on their examples {cut}")
    else:
        err.print(f"user {job.owner!r} is not evaluated by {where}")
    return replace(job, config=config)


def _train_one(ctx: typer.Context, store, population, job, trainer):
    """Run one trainer behind a progress bar (step, total, loss) on stderr; bad input exits with 2."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        bar_task = bar.add_task(f"{job.method} {job.scope} {job.owner or 'global'} / {job.task}", total=None, loss="-")
        tctx = train_context(
            ctx,
            store,
            population,
            lambda step, total, loss: bar.update(bar_task, completed=step, total=total, loss=f"{loss:.4f}"),
        )
        try:
            return trainer(job, tctx)
        except (ValueError, KeyError) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None


@train_app.command("queue")
def train_queue(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="task, e.g. amazon-title")],
    method: _TrainMethod = "lora",
    scope: _TrainScope = "user",
    users: Annotated[int, typer.Option(help="users to queue (those with the most examples of the task)")] = 20,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    r: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    batch_size: Annotated[int | None, typer.Option(help="examples per step")] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per example")] = None,
    init_from: Annotated[str | None, typer.Option(help="'global': start user adapters from the global one")] = None,
    balanced: Annotated[bool, typer.Option(help="class-balanced sampling (label tasks)")] = False,
    option: _TrainOpt = None,
    queue_file: Annotated[
        Path | None, typer.Option(help="queue database (default: <cache>/train-queue.sqlite)")
    ] = None,
    retry_failed: Annotated[bool, typer.Option(help="retry jobs that failed before")] = False,
    split: _TrainSplit = "auto",
    seed: _TrainSeed = 0,
    eval_users: _EvalUsers = 50,
    executor: Annotated[
        str, typer.Option(help="local (in this process) | ray (Ray actors; tailorlm\\[ray])")
    ] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster (auto, ray://host:10001); none: local")] = None,
    workers: Annotated[int, typer.Option(help="Ray workers (actors), each loads the base model once")] = 2,
) -> None:
    """Queue per-user jobs and run them; rerunning resumes (finished jobs are not retrained).

    The same leakage rules as ``tailorlm train``: a global job learns only from the
    split's training population, an evaluated user only from data before their query.
    ``--executor ray`` trains in Ray actors (the queue file stays with this process).
    """
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob
    from tailorlm.personalize.training.queue import DEFAULT_QUEUE_FILE, TrainQueue

    config = train_config(steps, lr, r, batch_size, max_length, init_from, balanced, option)
    runner = queue_executor(ctx, executor, address=address, workers=workers)  # a bad option fails first
    store = open_store(ctx)
    owners = _queue_owners(store, task, scope, users)
    try:
        planned = [TrainJob(method=method, scope=scope, owner=o, task=task, config=config) for o in owners]
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    plan = _plan(store, task, scope, split=split, eval_users=eval_users, seed=seed, users=None)
    jobs = []
    for job in planned:
        try:
            jobs.append(_leak_free(store, plan, job))
        except ValueError as exc:  # this user's query cannot be held out: the others still train
            err.print(f"[yellow]skipped:[/yellow] {exc}")
    if not jobs:
        err.print("[red]no job left to queue[/red]")
        raise typer.Exit(2)
    queue = TrainQueue(queue_file or Path(get_settings(ctx).cache_dir) / DEFAULT_QUEUE_FILE)
    queue.add(jobs)
    # Ray workers load their own model: the driver keeps only the store (for populations).
    tctx = train_context(ctx, store) if runner is None else TrainContext(store, None, None)  # type: ignore[arg-type]
    populations = {task: list(plan.users)} if plan is not None else {}
    on_job = _per_job_population(store, tctx, populations, split=split, eval_users=eval_users, seed=seed)
    result = queue.run(tctx, retry_failed=retry_failed, progress=on_job, executor=runner)
    console.print(f"queue {queue.path}: {result}")
    for qj in queue.jobs("failed"):
        err.print(f"[red]failed[/red] {qj.job.owner or 'global'}: {qj.error}")


def _per_job_population(
    store: Store, tctx: Any, populations: dict[str, list[str]], *, split: str, eval_users: int, seed: int
) -> Callable[[Any, int, int], None]:
    """The queue's progress callback: set each job's population, then say which job runs.

    A queue file keeps jobs of earlier invocations, possibly of other tasks, so the
    population is chosen per job (the job's task, this invocation's split) rather than
    once; a task without a possible split gets an empty population and its job fails,
    instead of falling back to every user in the store.
    """

    def on_job(qj: Any, i: int, n: int) -> None:
        job = qj.job
        if job.scope != "user" and job.task not in populations:
            try:
                plan = population_for(store, job.task, split=split, eval_users=eval_users, seed=seed)
                populations[job.task] = list(plan.users)
            except ValueError as exc:
                err.print(f"[red]{job.task}: {exc}[/red]")
                populations[job.task] = []
        tctx.users = populations.get(job.task) if job.scope != "user" else None
        err.print(f"[{i}/{n}] {job.method} {job.scope} {job.owner} {job.task}")

    return on_job


def _queue_owners(store, task: str, scope: str, users: int) -> list[str]:
    """The owners to queue: the users with the most (and at least two) examples, or the global one."""
    from collections import Counter

    if scope == "user":
        counts = Counter(e.user_id for e in store.get_examples(task=task))
        owners = [u for u, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n > 1][:users]
        if not owners:
            err.print(f"[red]no user has two or more examples of task {task!r}[/red]")
            raise typer.Exit(2)
        return owners
    if scope == "global":
        return [""]
    err.print("[red]queue scope must be 'user' or 'global' (train personas one at a time)[/red]")
    raise typer.Exit(2)


@train_app.command("pairs")
def train_pairs(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="the task whose examples are paired (e.g. amazon-title)")] = "amazon-title",
    user: Annotated[list[str] | None, typer.Option(help="user id (repeatable); default: --users of them")] = None,
    users: Annotated[int, typer.Option(help="users with the most examples of the task")] = 20,
    base_output: Annotated[bool, typer.Option(help="also prefer the user's text to the base model's output")] = False,
    dimensions: Annotated[bool, typer.Option(help="also derive concise/detailed pairs (Soups)")] = False,
) -> None:
    """Derive preference pairs from the users' real data for DPO (stored as Preference records).

    The user's own text is preferred to another user's text for a similar, earlier item
    (and, with --base-output, to the base model's answer). Rerunning changes nothing.
    """
    from collections import Counter

    from tailorlm.personalize.training.pairs import PairConfig, derive_pairs

    store = open_store(ctx)
    if user:
        owners = list(user)
    else:
        counts = Counter(e.user_id for e in store.get_examples(task=task))
        owners = [u for u, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:users]
    if not owners:
        err.print(f"[red]no user has examples of task {task!r}; load a dataset that provides them[/red]")
        raise typer.Exit(2)
    generator = None
    if base_output:
        from tailorlm.models import build_generator

        with err.status("loading the base model"):
            generator = build_generator(get_settings(ctx))
    with err.status(f"deriving pairs for {len(owners)} users"):
        report = derive_pairs(
            store,
            owners,
            config=PairConfig(task=task, base_output=base_output, dimensions=dimensions),
            generator=generator,
        )
    for source, n in sorted(report.stored.items()):
        console.print(f"stored  {source:40s} {n:6d}")
    for reason, n in sorted(report.skipped.items()):
        console.print(f"skipped {reason:40s} {n:6d}")


@train_app.command("list")
def train_list(
    ctx: typer.Context,
    method: Annotated[str | None, typer.Option(help="only this method")] = None,
    task: Annotated[str | None, typer.Option(help="only this task")] = None,
) -> None:
    """Registered adapters of every base model: key, size, steps, final loss, provenance.

    Provenance is how many users trained the adapter, STALE when one of them has been
    deleted since (``tailorlm train retrain-stale`` rebuilds it), or "unknown" for an
    adapter registered before manifests were recorded.
    """
    from tailorlm.adapters.registry import ADAPTER_KIND
    from tailorlm.data import ArtifactRef

    store = open_store(ctx)
    stale = {a.ref: a for a in store.stale_artifacts()}
    table = Table(title="adapters")
    cols = ("method", "scope", "owner", "task", "variant", "name", "MB", "steps", "final loss", "base model")
    for col in (*cols, "provenance"):
        table.add_column(col)
    for art in store.list_artifacts(kind=ADAPTER_KIND):
        p = art.payload or {}
        key, meta = p.get("key") or {}, p.get("meta") or {}
        if (method and key.get("method") != method) or (task and key.get("task") != task):
            continue
        curve = meta.get("loss_curve") or []
        table.add_row(
            key.get("method", "?"),
            art.scope,
            art.owner,
            key.get("task", "?"),
            key.get("variant", "?"),
            p.get("name", "?"),
            f"{meta.get('size_bytes', 0) / 1e6:.2f}",
            str(meta.get("steps", "")),
            f"{curve[-1]:.4f}" if curve else "",
            str(art.model or ""),
            provenance_cell(p.get("manifest"), stale.get(ArtifactRef(art.scope, art.owner, art.kind, art.key))),
        )
    console.print(table)
    for ref, mark in stale.items():
        if ref.kind != ADAPTER_KIND:
            console.print(f"[red]STALE[/red] {mark.describe()}")
    if stale:
        console.print("rebuild the stale artifacts without the deleted users: tailorlm train retrain-stale")


@train_app.command("retrain-stale")
def train_retrain_stale(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only show what would be rebuilt or removed")] = False,
) -> None:
    """Rebuild every artifact a user deletion marked stale, without the deleted users.

    Each adapter's recorded job is re-run with the same options on the current store, over
    its recorded population minus the deleted users; a persona description is written again
    from the remaining members; an artifact that learned only from deleted users is removed.
    The new record has a fresh manifest and no stale mark. Exits 1 if any rebuild failed.
    """
    from tailorlm.personalize.training.retrain import plan_retrain

    store = open_store(ctx)
    plans = plan_retrain(store)
    if not plans:
        console.print("no stale artifacts: nothing was trained on a deleted user")
        return
    console.print(retrain_table(plans, title="stale artifacts (in rebuild order)"))
    if dry_run:
        return
    outcomes = run_retrain(ctx, store, plans)
    console.print(retrain_table(outcomes, title="retrain-stale"))
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)
