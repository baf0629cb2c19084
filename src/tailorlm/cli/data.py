"""``tailorlm data ...``: load, fetch, inspect, export and delete user data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tailorlm.cli._common import console, err, get_settings, open_store

data_app = typer.Typer(help="Load, fetch, inspect, export and delete user data.", no_args_is_help=True)


@data_app.command("load")
def data_load(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="file or folder (MovieLens) to load")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="amazon | movielens | lamp | locomo | personachat | popquorn | jsonl | csv",
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
    drop_bad_optional: Annotated[
        bool,
        typer.Option(
            "--drop-bad-optional",
            help="LaMP: leave out an optional field that does not parse (e.g. a bad date) and count it, "
            "instead of rejecting the whole question",
        ),
    ] = False,
) -> None:
    """Load a dataset into the store in one transaction (all or nothing)."""
    from tailorlm.data.loaders import detect_format

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
    if drop_bad_optional:  # only when asked: loaders without the option would refuse it
        options["drop_bad_optional"] = True
    report = _load_with_progress(open_store(ctx), fmt, path, skip_bad, options)
    table = Table(title=f"loaded {path.name} as {fmt} in {report.seconds:.1f} s")
    table.add_column("table")
    table.add_column("rows added", justify="right")
    for name, n in report.added.items():
        if n:
            table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"{report.records:,} records read, {report.skipped:,} skipped")
    if report.dropped_fields:
        console.print(f"{report.dropped_fields:,} optional field(s) that did not parse were left out")
    for msg in report.errors:
        err.print(f"  [yellow]skipped:[/yellow] {msg}")


def _load_with_progress(store, fmt: str, path: Path, skip_bad: bool, options: dict[str, Any]):
    """Run the loader behind a progress bar on stderr; a failed load exits with 1."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from tailorlm.data.loaders import LoadError, load_dataset

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
            return load_dataset(store, fmt, path, skip_bad=skip_bad, progress=progress, **options)
        except LoadError as exc:
            err.print(f"[red]load failed, nothing was stored:[/red] {exc}")
            raise typer.Exit(1) from None


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
    folder = fetch_movielens_100k(get_settings(ctx).cache_dir)
    console.print(f"movielens-100k is in {folder}")
    if load:
        data_load(ctx, folder, fmt="movielens", skip_bad=False, namespace=None, outputs=None, drop_bad_optional=False)


@data_app.command("stats")
def data_stats(ctx: typer.Context) -> None:
    """Row counts, task examples and load history."""
    store = open_store(ctx)
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
        export = open_store(ctx).export_user(user_id=user)
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
    """Delete every row, vector, artifact and file of one user (and nothing else).

    Lists the shared artifacts (global or persona adapters, projectors, persona
    descriptions, adapters started from a global one) that learned from the user:
    they are marked stale until ``tailorlm train retrain-stale`` rebuilds them.
    """
    store = open_store(ctx)
    if not store.has_user(user_id=user):
        err.print(f"[red]unknown user {user!r}[/red]")
        raise typer.Exit(1)
    if not yes and not typer.confirm(f"Delete all data of user {user!r}?"):
        raise typer.Exit(1)
    from tailorlm.eval.erasure import forget_user_caches

    report = store.delete_user(user_id=user)
    rows = ", ".join(f"{k}: {v}" for k, v in report.rows.items() if v)
    console.print(f"deleted {user}: {rows}; {len(report.files)} artifact file(s)")
    cached = forget_user_caches(get_settings(ctx).cache_dir, user)
    if cached:
        console.print("purged from the caches: " + ", ".join(f"{k}: {v}" for k, v in cached.items()))
    if report.stale:
        console.print(f"[yellow]{len(report.stale)} shared artifact(s) learned from {user} and are now stale:[/yellow]")
        for art in report.stale:
            console.print(f"  {art.describe()}")
        console.print("rebuild them without the deleted user(s): tailorlm train retrain-stale")
