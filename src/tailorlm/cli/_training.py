"""Helpers of ``tailorlm train``: the trainer config from the command-line options, the
population a job may learn from (the split ``tailorlm run`` evaluates, left out) and the
training context (base model, adapter registry, lazy embedder).

Also the output of ``train list``'s provenance column and of ``train retrain-stale`` (its plan,
its progress bars and its outcomes).

Heavy libraries are imported inside the functions: building the context loads the base model.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from tailorlm.cli._common import cached_embedder, err, get_settings, lazy_embedder

if TYPE_CHECKING:
    from tailorlm.data import Store, TaskExample


def train_config(steps, lr, r, batch_size, max_length, init_from, balanced, options) -> dict:
    """The trainer config of the options that were given; --option KEY=VALUE values are JSON when they parse."""
    config: dict = {}
    for name, value in (("steps", steps), ("lr", lr), ("r", r), ("batch_size", batch_size)):
        if value is not None:
            config[name] = value
    if max_length is not None:
        config["max_length"] = max_length
    if init_from:
        config["init_from"] = init_from
    if balanced:
        config["balanced"] = True
    for opt in options or []:
        key, sep, raw = opt.partition("=")
        if not sep or not key:
            err.print(f"[red]--option must be KEY=VALUE, got {opt!r}[/red]")
            raise typer.Exit(2)
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def train_context(ctx: typer.Context, store, users=None, progress=None):
    """Load the base model (the local backend only) and wrap it with the store's adapter registry."""
    from tailorlm.adapters import AdapterRegistry
    from tailorlm.models import build_generator
    from tailorlm.models.base import AdapterGenerator, model_fingerprint
    from tailorlm.personalize.training.jobs import TrainContext

    settings = get_settings(ctx)
    with err.status("loading the base model"):
        generator = build_generator(settings)
    if not isinstance(generator, AdapterGenerator):
        err.print("[red]training needs the local backend (--backend local)[/red]")
        raise typer.Exit(2)
    registry = AdapterRegistry(store, base_model=model_fingerprint(generator))
    # Built on first use: soft prompts and clustered personas embed, LoRA and DPO do not.
    embedder = lazy_embedder(settings)
    return TrainContext(store, registry, generator, embedder=embedder, users=users, progress=progress)


def queue_executor(ctx: typer.Context, name: str, *, address: str | None, workers: int) -> Any:
    """The queue's executor for ``--executor``: None (in-process, the default) or a RayExecutor
    whose workers rebuild this invocation's settings (store, model, cached embedder) once each.

    Checked before anything loads, so a missing extra or a bad option fails in a second.
    """
    import functools

    if name == "local":
        if address is not None:
            err.print("[red]--address needs --executor ray[/red]")
            raise typer.Exit(2)
        return None
    if name != "ray":
        err.print(f"[red]--executor must be 'local' or 'ray', got {name!r}[/red]")
        raise typer.Exit(2)
    from tailorlm.errors import ConfigError
    from tailorlm.personalize.training.ray_executor import RayExecutor, SettingsContext, import_ray

    settings = get_settings(ctx)
    try:
        import_ray()
        make = SettingsContext(settings, embedder=functools.partial(cached_embedder, settings))
        return RayExecutor(make, workers=workers, address=address)
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")  # escaped: "tailorlm[ray]" is not markup
        raise typer.Exit(2) from None


@dataclass(frozen=True)
class TrainPopulation:
    """Who a CLI training job may learn from: the complement of what ``tailorlm run`` evaluates.

    Computed from the same seeded split ``run`` uses, so ``train`` then ``run`` with the same
    ``--split``/``--seed`` and ``run --users`` <= ``--eval-users`` never evaluates a user
    the adapter learned from (samples are nested: a smaller run's queries are part of it).
    """

    task: str
    kind: str  # the split kind make_split resolved (auto -> user or given)
    seed: int
    eval_users: int
    users: tuple[str, ...]  # global / persona adapters learn only from these
    available: int  # users the population had before --users sampled it
    queries: Mapping[str, tuple[TaskExample, ...]]  # evaluated user -> their query examples

    def describe(self) -> str:
        """One line for the terminal: which population, how big, which split."""
        sampled = f"{len(self.users)} of {self.available}" if len(self.users) < self.available else f"{self.available}"
        return (
            f"training population: {sampled} users of task {self.task!r} ({self.kind} split, seed {self.seed}; "
            f"the {len(self.queries)} users `tailorlm run --users {self.eval_users}` evaluates are left out)"
        )


def population_for(
    store: Store, task: str, *, split: str = "auto", eval_users: int = 50, seed: int = 0, users: int | None = None
) -> TrainPopulation:
    """The task's training population for ``split``/``seed``, then ``users`` of it sampled with ``seed``.

    The split's population already excludes held-out users (user split) and is the
    ``train`` file's users (given split), but a time split's population is every user,
    query users included: their query examples would be learned, so evaluated users are
    always removed. ``users`` draws a seeded sample, not the first ids alphabetically
    (which would favor one dataset's id prefix).

    Raises:
        ValueError: an impossible split (make_split's message), ``users`` < 1, or no user left.
    """
    from tailorlm.eval.splits import make_split

    if users is not None and users < 1:
        raise ValueError(f"--users must be >= 1, got {users}")
    the_split, query_examples = make_split(store, task, kind=split, n_users=eval_users, seed=seed)
    queries: dict[str, list[TaskExample]] = {}
    for (user, _), ex in sorted(query_examples.items()):
        queries.setdefault(user, []).append(ex)
    pool = sorted(u for u in the_split.population if u not in queries)
    if not pool:
        raise ValueError(
            f"the {the_split.kind} split of task {task!r} (seed {seed}) evaluates {len(queries)} users and leaves "
            f"none to train on; lower --eval-users (the number `tailorlm run --users` evaluates)"
        )
    chosen = pool if users is None or users >= len(pool) else sorted(random.Random(seed).sample(pool, users))
    return TrainPopulation(
        task=task,
        kind=the_split.kind,
        seed=seed,
        eval_users=eval_users,
        users=tuple(chosen),
        available=len(pool),
        queries={u: tuple(exs) for u, exs in queries.items()},
    )


def user_cut(store: Store, plan: TrainPopulation, user: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config of a user-scope job with the user's evaluation queries kept out of training.

    A user the split does not evaluate keeps the trainers' default (all but their latest
    example). An evaluated user learns only from examples strictly before their earliest
    query (a cut-off given with ``-O before=`` can only move earlier). Undated queries
    (POPQUORN picks a seeded random one) can only be held out as the latest example;
    anything else would leak, so it is refused.

    Raises:
        ValueError: an undated query that is not the user's latest example.
    """
    out = dict(config)
    queries = plan.queries.get(user)
    if not queries:
        return out
    dated = [q.timestamp for q in queries if q.timestamp is not None]
    if len(dated) == len(queries):
        out["before"] = min([*dated, *([out["before"]] if out.get("before") is not None else [])])
        return out
    from tailorlm.personalize.training.data import is_held_out_latest

    if len(queries) == 1 and out.get("before") is None and is_held_out_latest(store, queries[0]):
        out["exclude_latest"] = True
        return out
    raise ValueError(
        f"user {user!r} is evaluated by the {plan.kind} split (seed {plan.seed}, --eval-users {plan.eval_users}) "
        f"on undated example(s) {[q.example_id for q in queries]} that a user adapter cannot hold out; "
        "train a user the split does not evaluate, or change --seed / --eval-users"
    )


# -- provenance: `train list` and `train retrain-stale` ------------------------------------------


def provenance_cell(manifest: Any, stale: Any) -> str:
    """The provenance column of ``train list``: STALE (why, since when), N users, or unknown."""
    if stale is not None:
        since = time.strftime("%Y-%m-%d", time.gmtime(stale.stale_since))
        return f"[red]STALE[/red]: {stale.deleted_users} deleted user(s) since {since}"
    if isinstance(manifest, dict):
        return f"{manifest.get('users', '?')} user(s), {manifest.get('examples', '?')} rows"
    return "unknown (no manifest)"


def retrain_table(items: Sequence[Any], *, title: str) -> Table:
    """Plans (action, reason) or outcomes (status, detail) of ``retrain-stale`` as one table."""
    table = Table(title=title)
    for col in ("artifact", "scope", "owner", "deleted users", "stale since", "action", "detail"):
        table.add_column(col)
    for item in items:
        plan = getattr(item, "plan", item)
        art = plan.artifact
        action, detail = (item.status, item.detail) if item is not plan else (plan.action, plan.reason)
        colour = {"failed": "red", "retrained": "green", "removed": "yellow"}.get(action)
        table.add_row(
            art.name or f"{art.ref.kind} {art.ref.key}",
            art.ref.scope,
            art.ref.owner,
            str(art.deleted_users),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(art.stale_since)),
            f"[{colour}]{action}[/{colour}]" if colour else action,
            detail,
        )
    return table


def run_retrain(ctx: typer.Context, store: Store, plans: Sequence[Any]) -> list[Any]:
    """Carry out ``retrain-stale``'s plans behind two progress bars on stderr: artifacts done,
    and the current training's steps and loss. The base model is loaded only if something trains."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tailorlm.personalize.training.jobs import TrainContext
    from tailorlm.personalize.training.retrain import retrain_stale

    needs_model = any(p.action == "retrain" for p in plans)  # else only removals and skips
    tctx = train_context(ctx, store) if needs_model else TrainContext(store, None, None)  # type: ignore[arg-type]
    columns = (BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"), TimeElapsedColumn())
    with Progress("[progress.description]{task.description}", *columns, console=err) as bar:
        overall = bar.add_task("stale artifacts", total=len(plans), loss="")
        steps = bar.add_task("  training", total=None, loss="", visible=False)

        def on_start(plan: Any, i: int, n: int) -> None:
            what = plan.artifact.name or plan.artifact.ref.label()
            bar.update(overall, completed=i - 1, description=f"[{i}/{n}] {plan.action} {what}")
            bar.reset(steps, total=None, loss="", visible=plan.action == "retrain")

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(steps, completed=step, total=total, loss=f"loss {loss:.4f}")

        tctx.progress = on_step
        outcomes = retrain_stale(tctx, plans, on_start=on_start)
        bar.update(overall, completed=len(plans), description="stale artifacts")
        bar.update(steps, visible=False)
    return outcomes
