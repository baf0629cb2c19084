"""The ``tailorlm`` command line (Typer + Rich).

Heavy libraries (torch, transformers, sentence-transformers) are imported inside
the commands that need them, so ``tailorlm --help`` and data commands start fast.
Global flags override the config file and ``TAILORLM_*`` variables (see settings.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tailorlm.demo import side_by_side
from tailorlm.settings import Settings, load_settings

app = typer.Typer(help="Personalize LLMs for their users.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Load, fetch, inspect, export and delete user data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err = Console(stderr=True)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj["settings"]


def _cached_embedder(settings: Settings):
    """The configured embedder behind a vector cache in the cache folder: persona discovery
    re-embeds a population's whole history in every process, minutes on a laptop."""
    from tailorlm.eval.cache import CachedEmbedder
    from tailorlm.models import build_embedder

    return CachedEmbedder(build_embedder(settings), Path(settings.cache_dir) / "embeddings.sqlite")


def _store(ctx: typer.Context):
    from tailorlm.data import Store

    return Store.from_settings(_settings(ctx))


@app.callback()
def main(
    ctx: typer.Context,
    store_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the store (sqlite:///... or postgresql://...)"),
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="models, datasets and the default store")] = None,
    backend: Annotated[str | None, typer.Option(help="generator backend: local | openai")] = None,
    model: Annotated[str | None, typer.Option(help="'smollm2', a local HF folder, or a remote model name")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    ] = None,
) -> None:
    try:
        settings = load_settings(
            store_url=store_url,
            cache_dir=cache_dir,
            generator={"backend": backend, "model": model, "base_url": base_url},
        )
    except ValueError as exc:
        err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None
    ctx.obj = {"settings": settings}


@app.command()
def info(ctx: typer.Context) -> None:
    """Store URL, schema version, configured models and row counts."""
    s = _settings(ctx)
    store = _store(ctx)
    table = Table(title="tailorlm", show_header=False)
    table.add_row("store", store.url)
    table.add_row("schema version", str(store.schema_version))
    table.add_row("cache dir", str(s.cache_dir))
    g = s.generator
    table.add_row("generator", f"{g.backend}: {g.model}" + (f" @ {g.base_url}" if g.base_url else ""))
    table.add_row("embedder", f"{s.embedder.backend}: {s.embedder.model}")
    for name, n in store.counts().items():
        table.add_row(name, f"{n:,}")
    console.print(table)


@data_app.command("load")
def data_load(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="file or folder (MovieLens) to load")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="amazon | movielens | lamp | personachat | popquorn | jsonl | csv",
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="skip malformed lines and report them instead of aborting"),
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(help="prefix for user/item ids (default: the dataset name; '' for none)"),
    ] = None,
    outputs: Annotated[Path | None, typer.Option(help="LaMP outputs file (gold answers)")] = None,
) -> None:
    """Load a dataset into the store in one transaction (all or nothing)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from tailorlm.data.loaders import LoadError, detect_format, load_dataset

    if not path.exists():
        err.print(f"[red]no such file or folder:[/red] {path}")
        raise typer.Exit(2)
    fmt = fmt or detect_format(path)
    if fmt is None:
        err.print(f"[red]cannot tell the format of {path}; pass --format[/red]")
        raise typer.Exit(2)
    options: dict[str, Any] = {}
    if namespace is not None:
        options["namespace"] = namespace
    if outputs is not None:
        options["outputs"] = outputs
    store = _store(ctx)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(f"loading {path.name} ({fmt})", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        try:
            report = load_dataset(store, fmt, path, skip_bad=skip_bad, progress=progress, **options)
        except LoadError as exc:
            err.print(f"[red]load failed, nothing was stored:[/red] {exc}")
            raise typer.Exit(1) from None
    table = Table(title=f"loaded {path.name} as {fmt} in {report.seconds:.1f} s")
    table.add_column("table")
    table.add_column("rows added", justify="right")
    for name, n in report.added.items():
        if n:
            table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"{report.records:,} records read, {report.skipped:,} skipped")
    for msg in report.errors:
        err.print(f"  [yellow]skipped:[/yellow] {msg}")


@data_app.command("fetch")
def data_fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dataset to fetch: movielens-100k")],
    load: Annotated[bool, typer.Option(help="also load it into the store")] = False,
) -> None:
    """Download a public dataset into the user cache."""
    from tailorlm.data.fetch import fetch_movielens_100k

    if name != "movielens-100k":
        err.print(f"[red]unknown dataset {name!r}[/red]; available: movielens-100k")
        raise typer.Exit(2)
    folder = fetch_movielens_100k(_settings(ctx).cache_dir)
    console.print(f"movielens-100k is in {folder}")
    if load:
        data_load(ctx, folder, fmt="movielens", skip_bad=False, namespace=None, outputs=None)


@data_app.command("stats")
def data_stats(ctx: typer.Context) -> None:
    """Row counts, task examples and load history."""
    store = _store(ctx)
    table = Table(title=f"store {store.url}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in store.counts().items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    tasks = store.list_tasks()
    if tasks:
        t2 = Table(title="task examples")
        t2.add_column("task")
        t2.add_column("examples", justify="right")
        for task, n in sorted(tasks.items()):
            t2.add_row(task, f"{n:,}")
        console.print(t2)
    loads = store.list_loads()
    if loads:
        t3 = Table(title="loads")
        for col in ("source", "path", "records", "skipped"):
            t3.add_column(col)
        for ld in loads[-10:]:
            t3.add_row(ld["source"], ld["path"], f"{ld['records']:,}", str(ld["skipped"]))
        console.print(t3)


@data_app.command("export")
def data_export(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="user id")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write JSON here instead of stdout")] = None,
) -> None:
    """Everything stored about one user, as JSON."""
    try:
        export = _store(ctx).export_user(user_id=user)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    text = json.dumps(export, indent=2, ensure_ascii=False)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@data_app.command("delete-user")
def data_delete_user(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="user id")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete every row, vector, artifact and file of one user (and nothing else)."""
    store = _store(ctx)
    if not store.has_user(user_id=user):
        err.print(f"[red]unknown user {user!r}[/red]")
        raise typer.Exit(1)
    if not yes and not typer.confirm(f"Delete all data of user {user!r}?"):
        raise typer.Exit(1)
    report = store.delete_user(user_id=user)
    rows = ", ".join(f"{k}: {v}" for k, v in report.rows.items() if v)
    console.print(f"deleted {user}: {rows}; {len(report.files)} artifact file(s)")


@app.command()
def generate(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="what to ask the model")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="personalize for this user")] = None,
    method: Annotated[
        str, typer.Option(help="personalization method spec, e.g. rag-bm25, recency+attributes")
    ] = "rag-bm25",
    max_new_tokens: Annotated[int, typer.Option(help="generation budget")] = 96,
    compare: Annotated[bool, typer.Option(help="also show the non-personalized answer")] = False,
) -> None:
    """Generate an answer, personalized for --user with the chosen method."""
    from tailorlm.models import GenerationConfig, build_generator
    from tailorlm.personalize import Query, parse_method_spec

    store = _store(ctx)
    if user is not None and not store.has_user(user_id=user):
        err.print(f"[red]unknown user {user!r}[/red] (see `tailorlm data stats`)")
        raise typer.Exit(1)
    try:
        personalizer = parse_method_spec(method if user else "identity").fit(store, [user] if user else [])
        baseline = parse_method_spec("identity").fit(store, [])
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    query = Query(request, task="chat")
    personalized = personalizer.personalize(user or "", query)
    batch = [personalized.messages] + ([baseline.personalize(user or "", query).messages] if compare else [])
    with err.status("loading the model"):
        generator = build_generator(_settings(ctx))
    with err.status("generating"):
        answers = generator.generate(batch, config=GenerationConfig(max_new_tokens=max_new_tokens))
    if user is not None:
        rec = personalized.record
        err.print(
            f"[dim]{method}: scope {rec.scope}, {len(rec.retrieved)} items, {rec.prompt_tokens} prompt tokens[/dim]"
        )
    if compare:
        side_by_side(console, answers[1], answers[0])
    else:
        console.print(answers[0])


@app.command()
def run(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(help="method spec, e.g. identity, rag-bm25, rag-dense+profile, persona")],
    task: Annotated[str, typer.Option(help="task name, e.g. amazon-rating, amazon-title, popquorn-offensiveness")],
    users: Annotated[int, typer.Option(help="evaluated users (sampled by seed)")] = 50,
    predictor: Annotated[
        str, typer.Option(help="auto | generate | choice | choice-calibrated | retrieval-vote | majority | user-mean")
    ] = "auto",
    split: Annotated[str, typer.Option(help="user (unseen users) | time (latest item of every user)")] = "user",
    seed: Annotated[int, typer.Option(help="split seed")] = 0,
    k: Annotated[int | None, typer.Option(help="retrieved entries (RAG methods)")] = None,
    budget: Annotated[int, typer.Option(help="prompt token budget")] = 1024,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the full result (rows included) as JSON")
    ] = None,
) -> None:
    """Run one personalization method on one task for a sample of users and score it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tailorlm.eval import run_method
    from tailorlm.models import build_generator

    if split not in ("user", "time"):
        err.print(f"[red]--split must be 'user' or 'time', got {split!r}[/red]")
        raise typer.Exit(2)
    settings = _settings(ctx)
    store = _store(ctx)
    needs_llm = predictor in ("auto", "generate", "choice", "choice-calibrated") or "profile" in method
    # Dense retrieval, clustered personas (also for persona adapters) and soft prompts embed;
    # the embedder is built on first use, so a lora-global run never loads it.
    needs_emb = any(part in method for part in ("dense", "hybrid", "persona", "lora", "dpo", "softprompt"))
    generator = embedder = None
    with err.status("loading models"):
        if needs_llm:
            generator = build_generator(settings)
        if needs_emb:
            from tailorlm.models.embedders import LazyEmbedder

            embedder = LazyEmbedder(lambda: _cached_embedder(settings))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        bar_task = bar.add_task(f"{method} on {task}", total=None)
        try:
            result = run_method(
                store,
                method=method,
                task=task,
                n_users=users,
                split=split,
                seed=seed,  # type: ignore[arg-type]
                predictor=predictor,
                generator=generator,
                embedder=embedder,
                budget_tokens=budget,
                k=k,
                progress=lambda done, total: bar.update(bar_task, completed=done, total=total),
            )
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    table = Table(title=f"{method} / {task} / predictor {result.predictor} ({result.seconds:.1f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if output:
        output.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        err.print(f"wrote {output}")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="interface to bind (default: serve.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: serve.port, 8000)")] = None,
    rotate_admin_key: Annotated[
        bool, typer.Option("--rotate-admin-key", help="revoke the admin key(s) and print a new one")
    ] = False,
) -> None:
    """Serve the OpenAI-compatible API, the REST API for user data and the web workbench."""
    from tailorlm.serve import KeyStore, create_app
    from tailorlm.serve.server import serve_forever

    settings = _settings(ctx)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update={"serve": settings.serve.model_copy(update=overrides)})
    store = _store(ctx)
    rotated = KeyStore(store).rotate_admin() if rotate_admin_key else None
    with err.status("loading the model"):
        application = create_app(settings, store=store)
    key = rotated or application.state.admin_key_created
    url = f"http://{settings.serve.host}:{settings.serve.port}"
    # soft_wrap: never break the key or the command across lines, so they copy and paste whole.
    if key:
        console.print(f"admin key (shown once, stored only as a hash): [green]{key}[/green]", soft_wrap=True)
    console.print(f"tailorlm on {url}  (workbench {url}/, API docs {url}/docs)", soft_wrap=True)
    console.print(
        f"  curl {url}/v1/chat/completions -H 'Authorization: Bearer <key>' -H 'Content-Type: application/json' "
        '-d \'{"model": "tailorlm/rag-bm25", "user": "<user id>", "messages": [{"role": "user", "content": "Hi"}]}\'',
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    serve_forever(application, host=settings.serve.host, port=settings.serve.port)


@app.command()
def bench(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option(help="packaged suite (quick | full) or a suite .toml file")] = "quick",
    out: Annotated[Path | None, typer.Option(help="results folder (default: benchmarks/results/<suite>)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="folder the suite's dataset paths are relative to (env TAILORLM_DATA_DIR)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="rerun rows already in the results")] = False,
) -> None:
    """Run an evaluation suite: JSON, Markdown, plots and an HTML report, with 95% CIs."""
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tailorlm.eval.bench import run_bench
    from tailorlm.eval.suite import load_suite

    try:
        config = load_suite(suite)
    except (ValueError, OSError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    env_data = os.environ.get("TAILORLM_DATA_DIR")
    data = data_dir or (Path(env_data) if env_data else None)
    out_dir = out or Path("benchmarks") / "results" / config.name
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as bar:  # fmt: skip
        ids: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in ids:
                for old in ids.values():
                    bar.remove_task(old)
                ids.clear()
                ids[name] = bar.add_task(name, total=total)
            bar.update(ids[name], completed=done, total=total)

        files = run_bench(
            config,
            settings=_settings(ctx),
            out_dir=out_dir,
            data_dir=data,
            force=force,
            log=lambda msg: bar.console.print(msg, markup=False, highlight=False),
            progress=progress,
        )
    for kind, path in files.items():
        console.print(f"{kind:12s} {path}")


@app.command()
def demo(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(help="how many users to show")] = 3,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="then start the service (the main job)")] = True,
    port: Annotated[int | None, typer.Option(help="TCP port for the service (default: serve.port, 8000)")] = None,
) -> None:
    """Load real data, answer for real users with and without personalization, then serve on 127.0.0.1."""
    from tailorlm.demo import run_demo

    run_demo(_settings(ctx), console=console, n_users=users, serve=serve, port=port)


# -- training (offline; never in the request path) ----------------------------------------

train_app = typer.Typer(
    help="Train adapters (LoRA, DPO, ...) offline: one job, a resumable queue, or list the registry.",
    invoke_without_command=True,
)
app.add_typer(train_app, name="train")

_TrainMethod = Annotated[str, typer.Option(help="trainer: lora | dpo | softprompt | ...")]
_TrainScope = Annotated[str, typer.Option(help="user | persona | global")]
_TrainOpt = Annotated[
    list[str] | None, typer.Option("--option", "-O", help="extra trainer option KEY=VALUE (JSON values allowed)")
]


def _train_config(steps, lr, r, batch_size, max_length, init_from, balanced, options) -> dict:
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


def _train_context(ctx: typer.Context, store, users=None, progress=None):
    from tailorlm.adapters import AdapterRegistry
    from tailorlm.eval.cache import model_fingerprint
    from tailorlm.models import build_generator
    from tailorlm.train.jobs import TrainContext

    settings = _settings(ctx)
    with err.status("loading the base model"):
        generator = build_generator(settings)
    if not hasattr(generator, "tokenizer"):
        err.print("[red]training needs the local backend (--backend local)[/red]")
        raise typer.Exit(2)
    registry = AdapterRegistry(store, base_model=model_fingerprint(generator))
    from tailorlm.models.embedders import LazyEmbedder

    # Built on first use: soft prompts and clustered personas embed, LoRA and DPO do not.
    embedder = LazyEmbedder(lambda: _cached_embedder(settings))
    return TrainContext(store, registry, generator, embedder=embedder, users=users, progress=progress)


@train_app.callback()
def train(
    ctx: typer.Context,
    method: _TrainMethod = "lora",
    scope: _TrainScope = "user",
    user: Annotated[str | None, typer.Option(help="user id (scope user)")] = None,
    persona: Annotated[str | None, typer.Option(help="persona id 'attribute=value' (scope persona)")] = None,
    task: Annotated[str | None, typer.Option(help="task, e.g. amazon-title, amazon-rating")] = None,
    users: Annotated[int | None, typer.Option(help="population size for persona/global scope (default all)")] = None,
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tailorlm.train.jobs import TrainJob, get_trainer

    if task is None:
        err.print("[red]--task is required (e.g. --task amazon-title)[/red]")
        raise typer.Exit(2)
    owner = {"user": user, "persona": persona}.get(scope) or ""
    config = _train_config(steps, lr, r, batch_size, max_length, init_from, balanced, option)
    try:
        job = TrainJob(method=method, scope=scope, owner=owner, task=task, config=config)
        trainer = get_trainer(method)
    except (ValueError, KeyError) as exc:
        err.print(f"[red]{exc}[/red] (scope user needs --user, scope persona needs --persona)")
        raise typer.Exit(2) from None
    store = _store(ctx)
    population = store.list_users(limit=users) if users else None
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        bar_task = bar.add_task(f"{method} {scope} {owner or 'global'} / {task}", total=None, loss="-")
        tctx = _train_context(
            ctx,
            store,
            population,
            lambda step, total, loss: bar.update(bar_task, completed=step, total=total, loss=f"{loss:.4f}"),
        )
        try:
            record = trainer(job, tctx)
        except (ValueError, KeyError) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    curve = record.meta.get("loss_curve") or [float("nan")]
    console.print(
        f"registered [bold]{record.name}[/bold] ({record.meta.get('size_bytes', 0) / 1e6:.2f} MB, "
        f"{record.meta.get('steps')} steps, loss {curve[0]:.4f} -> {curve[-1]:.4f}, "
        f"{record.meta.get('seconds', 0):.1f} s) at {record.path}"
    )


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
) -> None:
    """Queue per-user jobs and run them; rerunning resumes (finished jobs are not retrained)."""
    from collections import Counter

    from tailorlm.train.jobs import TrainJob
    from tailorlm.train.queue import TrainQueue

    config = _train_config(steps, lr, r, batch_size, max_length, init_from, balanced, option)
    store = _store(ctx)
    if scope == "user":
        counts = Counter(e.user_id for e in store.get_examples(task=task))
        owners = [u for u, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n > 1][:users]
        if not owners:
            err.print(f"[red]no user has two or more examples of task {task!r}[/red]")
            raise typer.Exit(2)
    elif scope == "global":
        owners = [""]
    else:
        err.print("[red]queue scope must be 'user' or 'global' (train personas one at a time)[/red]")
        raise typer.Exit(2)
    try:
        jobs = [TrainJob(method=method, scope=scope, owner=o, task=task, config=config) for o in owners]
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    queue = TrainQueue(queue_file or Path(_settings(ctx).cache_dir) / "train-queue.sqlite")
    queue.add(jobs)
    tctx = _train_context(ctx, store)
    result = queue.run(
        tctx,
        retry_failed=retry_failed,
        progress=lambda qj, i, n: err.print(f"[{i}/{n}] {qj.job.method} {qj.job.scope} {qj.job.owner} {qj.job.task}"),
    )
    console.print(f"queue {queue.path}: {result}")
    for qj in queue.jobs("failed"):
        err.print(f"[red]failed[/red] {qj.job.owner or 'global'}: {qj.error}")


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

    from tailorlm.train.pairs import PairConfig, derive_pairs

    store = _store(ctx)
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
            generator = build_generator(_settings(ctx))
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
    """Registered adapters of every base model: key, size, steps, final loss."""
    from tailorlm.adapters.registry import ADAPTER_KIND

    store = _store(ctx)
    table = Table(title="adapters")
    for col in ("method", "scope", "owner", "task", "variant", "name", "MB", "steps", "final loss", "base model"):
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
        )
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
