"""``tailorlm run``: score one personalization method on one task for a sample of users."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tailorlm.cli._common import console, err, get_settings, lazy_embedder, open_store


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
    from tailorlm.personalize import needs_of

    if split not in ("user", "time"):
        err.print(f"[red]--split must be 'user' or 'time', got {split!r}[/red]")
        raise typer.Exit(2)
    settings = get_settings(ctx)
    store = open_store(ctx)
    try:
        needs = needs_of(method)  # what the methods' configs declare; an unknown spec fails here
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    needs_llm = predictor in ("auto", "generate", "choice", "choice-calibrated") or "generator" in needs
    # the embedder is built on first use, so a run that never embeds never loads it
    needs_emb = "embedder" in needs
    generator = embedder = None
    with err.status("loading models"):
        if needs_llm:
            generator = build_generator(settings)
        if needs_emb:
            embedder = lazy_embedder(settings)
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
    _print_result(method, task, result, output)


def _print_result(method: str, task: str, result, output: Path | None) -> None:
    """The metrics as a table on stdout and, with --output, the full result as JSON."""
    table = Table(title=f"{method} / {task} / predictor {result.predictor} ({result.seconds:.1f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if output:
        output.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        err.print(f"wrote {output}")
