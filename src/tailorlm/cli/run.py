"""``tailorlm run``: score one personalization method on one task for a sample of users.

Everything that can be wrong with the input (predictor, task, method specs, the split
itself) is checked before any model loads, so a bad ``--users`` costs a second, not the
minutes of loading a model. The printed numbers carry 95% bootstrap CIs, and with
``--baseline`` a paired test on the same queries: a single point estimate on 50 users
says little about whether a method helps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tailorlm.cli._common import console, err, get_settings, lazy_embedder, open_store


def run(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(help="method spec, e.g. identity, rag-bm25, rag-dense+profile, persona")],
    task: Annotated[str, typer.Option(help="task name, e.g. amazon-rating, amazon-title, popquorn-offensiveness")],
    users: Annotated[int, typer.Option(help="evaluated users (sampled by seed)")] = 50,
    predictor: Annotated[
        str,
        typer.Option(
            help="auto | generate | choice | choice-calibrated | choice-prior | retrieval-vote | majority | user-mean "
            "| global-text | item-mean | user-offset | user-prior | user-stack | llm-text | ..."
        ),
    ] = "auto",
    split: Annotated[
        str,
        typer.Option(help="auto (given if the dataset has one, else user) | user (unseen users) | time | given"),
    ] = "auto",
    seed: Annotated[int, typer.Option(help="split seed (also seeds the bootstrap)")] = 0,
    k: Annotated[int | None, typer.Option(help="retrieved entries (RAG methods)")] = None,
    budget: Annotated[int, typer.Option(help="prompt token budget")] = 1024,
    baseline: Annotated[
        str | None, typer.Option(help="a method spec run on the same split; prints a paired test against it")
    ] = None,
    baseline_predictor: Annotated[
        str | None, typer.Option(help="the baseline's predictor (default: --predictor)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the full result (rows, ci, paired) as JSON")
    ] = None,
) -> None:
    """Run one personalization method on one task for a sample of users and score it."""
    from tailorlm.eval.compare import paired, with_uncertainty

    store = open_store(ctx)
    base_pred = baseline_predictor or predictor
    needs = _check(store, method, task, predictor, baseline, base_pred, split=split, users=users, seed=seed)
    generator, embedder = _load_models(ctx, needs)
    common = {"task": task, "n_users": users, "split": split, "seed": seed, "budget_tokens": budget, "k": k}
    common |= {"generator": generator, "embedder": embedder}
    result = with_uncertainty(_evaluate(store, method, predictor, common).to_dict(), seed)
    if baseline is not None:
        base = with_uncertainty(_evaluate(store, baseline, base_pred, common).to_dict(), seed)
        result["paired"] = paired(result, base, seed, f"{baseline} / {base.get('predictor', base_pred)}")
        result["baseline"] = base
    _print_result(method, task, result, output)


def _check(
    store: Any,
    method: str,
    task: str,
    predictor: str,
    baseline: str | None,
    baseline_predictor: str,
    *,
    split: str,
    users: int,
    seed: int,
) -> set[str]:
    """Validate every input and the split before any model loads; exit 2 with the reason.

    Returns what the methods declare they need ("generator", "embedder") plus "llm" when
    a predictor scores or generates with the model.
    """
    from tailorlm.eval.runner import PREDICTORS
    from tailorlm.eval.splits import make_split
    from tailorlm.personalize import needs_of
    from tailorlm.tasks import get_task

    try:
        for name in {predictor, baseline_predictor}:
            if name not in PREDICTORS:
                raise ValueError(f"unknown predictor {name!r}; use one of {PREDICTORS}")
        get_task(task)
        needs = set(needs_of(method))  # what the methods' configs declare; an unknown spec fails here
        if baseline is not None:
            needs |= set(needs_of(baseline))
        the_split, _ = make_split(store, task, kind=split, n_users=users, seed=seed)
    except (ValueError, KeyError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if len(the_split.queries) < users:
        err.print(
            f"[yellow]only {len(the_split.queries)} queries of task {task!r} are eligible for the "
            f"{the_split.kind} split; evaluating those, not {users}[/yellow]"
        )
    from tailorlm.eval.runner import LLM_PREDICTORS

    llm = {"auto", *LLM_PREDICTORS}  # "auto" resolves to an LLM predictor for every task kind
    if predictor in llm or (baseline is not None and baseline_predictor in llm):
        needs.add("llm")
    return needs


def _load_models(ctx: typer.Context, needs: set[str]) -> tuple[Any, Any]:
    """The generator (when a predictor or a method needs it) and the embedder (built on first use)."""
    from tailorlm.models import build_generator

    settings = get_settings(ctx)
    generator = embedder = None
    with err.status("loading models"):
        if "llm" in needs or "generator" in needs:
            generator = build_generator(settings)
        if "embedder" in needs:
            # built on first use, so a run that never embeds never loads it
            embedder = lazy_embedder(settings)
    return generator, embedder


def _evaluate(store: Any, method: str, predictor: str, common: dict[str, Any]) -> Any:
    """One ``run_method`` behind a progress bar on stderr; a ValueError exits with 2."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tailorlm.eval import run_method

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        bar_task = bar.add_task(f"{method} on {common['task']}", total=None)
        try:
            return run_method(
                store,
                method=method,
                predictor=predictor,
                progress=lambda done, total: bar.update(bar_task, completed=done, total=total),
                **common,
            )
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics_table(title: str, result: dict[str, Any]) -> Table:
    """Every metric, with the 95% bootstrap CI of the primary ones."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for name, value in result["metrics"].items():
        ci = result.get("ci", {}).get(name)
        table.add_row(name, _fmt(value), f"[{ci['low']:.4f}, {ci['high']:.4f}]" if ci else "")
    return table


def _category_table(by_category: dict[str, Any]) -> Table:
    """Memory QA: each question category's metrics with 95% CIs (n: the values each rests on)."""
    metrics = list(dict.fromkeys(m for cell in by_category.values() for m in cell["ci"]))
    table = Table(title="by question category")
    for col in ("category", "questions", *metrics):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, cell in by_category.items():
        cis = cell["ci"]
        values = [
            f"{cis[m]['estimate']:.3f} [{cis[m]['low']:.3f}, {cis[m]['high']:.3f}] n={cis[m]['n']}" if m in cis else ""
            for m in metrics
        ]
        table.add_row(cat, str(cell["n"]), *values)
    return table


def _paired_table(method: str, comparison: dict[str, Any]) -> Table:
    """Method minus baseline per primary metric on the common queries: difference, CI, p-value."""
    from tailorlm.eval.metrics import METRIC_DIRECTION

    table = Table(title=f"paired test: {method} - {comparison['baseline']} (n={comparison['n']} common queries)")
    for col in ("metric", "difference", "95% CI", "p-value", "better"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for metric, t in comparison["tests"].items():
        gain = METRIC_DIRECTION.get(metric, 1) * t["difference"]
        better = "method" if gain > 0 else "baseline" if gain < 0 else "tie"
        table.add_row(
            metric, f"{t['difference']:+.4f}", f"[{t['low']:+.4f}, {t['high']:+.4f}]", f"{t['p_value']:.4f}", better
        )
    return table


def _print_result(method: str, task: str, result: dict[str, Any], output: Path | None) -> None:
    """The metrics (and the baseline's, and the paired test) as tables; with --output, all as JSON."""
    title = f"{method} / {task} / predictor {result['predictor']} ({result['seconds']:.1f} s)"
    console.print(_metrics_table(title, result))
    if result.get("ci_by_category"):
        console.print(_category_table(result["ci_by_category"]))
    if "baseline" in result:
        base = result["baseline"]
        console.print(_metrics_table(f"baseline {base['method']} / predictor {base['predictor']}", base))
        console.print(_paired_table(method, result["paired"]))
    if output:
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        err.print(f"wrote {output}")
