"""``tailorlm bench``: run an evaluation suite and write its reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tailorlm.cli._common import console, err, get_settings
from tailorlm.cli._training import queue_executor


def bench(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option(help="packaged suite (quick | full) or a suite .toml file")] = "quick",
    out: Annotated[Path | None, typer.Option(help="results folder (default: benchmarks/results/<suite>)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="folder the suite's dataset paths are relative to (env TAILORLM_DATA_DIR)")
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="recompute every row, ignoring results.json and the generation cache (fresh values are cached)",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", hidden=True, help="deprecated alias of --fresh")] = False,
    executor: Annotated[
        str, typer.Option(help="where \\[\\[train]] jobs and rows run: local | ray (tailorlm\\[ray])")
    ] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster (auto, ray://host:10001); none: local")] = None,
    workers: Annotated[int, typer.Option(help="Ray workers for \\[\\[train]] jobs and for rows")] = 2,
) -> None:
    """Run an evaluation suite: JSON, Markdown, plots and an HTML report, with 95% CIs.

    Rows already in the results folder are reused only when their fingerprint (settings,
    data hashes, model, package version) matches; --fresh recomputes everything.
    ``--executor ray`` trains the suite's \\[\\[train]] entries and evaluates its rows on Ray
    actors, several rows at once; this process decides what is reused and writes the reports.
    """
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tailorlm.eval.bench import run_bench
    from tailorlm.eval.suite import load_suite

    try:
        config = load_suite(suite)
    except (ValueError, OSError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if force:
        err.print("[yellow]--force is deprecated; use --fresh[/yellow]")
    train_executor = bench_train_executor(ctx, executor, address=address, workers=workers)
    row_executor = bench_row_executor(ctx, executor, address=address, workers=workers)
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
            settings=get_settings(ctx),
            out_dir=out_dir,
            data_dir=data,
            fresh=fresh or force,
            log=lambda msg: bar.console.print(msg, markup=False, highlight=False),
            progress=progress,
            train_executor=train_executor,
            row_executor=row_executor,
        )
    for kind, path in files.items():
        console.print(f"{kind:12s} {path}")


def bench_train_executor(ctx: typer.Context, name: str, *, address: str | None, workers: int) -> Any:
    """For ``--executor ray``: a factory of the RayExecutor whose workers open the bench's own
    store (its SQLite file and files folder), since that store exists only once the run starts."""
    from dataclasses import replace

    runner = queue_executor(ctx, name, address=address, workers=workers)  # checks the options now
    if runner is None:
        return None

    def for_store(store: Any) -> Any:
        make = replace(runner.make_context, store_url=store.url, files_dir=str(store.files_dir))
        return replace(runner, make_context=make)

    return for_store


def bench_row_executor(ctx: typer.Context, name: str, *, address: str | None, workers: int) -> Any:
    """For ``--executor ray``: a RayRowExecutor on this invocation's settings (its workers open
    the bench's store and caches once the run has made them); None runs rows here."""
    if name != "ray":
        return None  # the options were checked by bench_train_executor
    from tailorlm.eval.ray_rows import RayRowExecutor, RowEnvRecipe

    settings = get_settings(ctx)
    return RayRowExecutor(
        RowEnvRecipe(settings, store_url=settings.resolved_store_url), workers=workers, address=address
    )
