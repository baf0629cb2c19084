"""``tailorlm generate``: one answer, personalized for a user (optionally beside the plain one)."""

from __future__ import annotations

from typing import Annotated

import typer

from tailorlm.cli._common import console, err, get_settings, lazy_embedder, open_store
from tailorlm.demo import side_by_side


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
    from tailorlm.models.inputs import generate_inputs
    from tailorlm.personalize import Query, needs_of, parse_method_spec, personalize_input

    store = open_store(ctx)
    if user is not None and not store.has_user(user_id=user):
        err.print(f"[red]unknown user {user!r}[/red] (see `tailorlm data stats`)")
        raise typer.Exit(1)
    spec = method if user else "identity"
    try:
        needs = needs_of(spec)  # fails fast on an unknown spec, before any model loads
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    with err.status("loading the model"):
        generator = build_generator(get_settings(ctx))
    embedder = None
    if "embedder" in needs:
        embedder = lazy_embedder(get_settings(ctx))
    try:
        collaborators = {"generator": generator, "embedder": embedder}
        personalizer = parse_method_spec(spec, collaborators=collaborators).fit(store, [user] if user else [])
        baseline = parse_method_spec("identity").fit(store, [])
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    query = Query(request, task="chat")
    personalized = personalize_input(personalizer, user or "", query=query)
    rows = [personalized] + ([personalize_input(baseline, user or "", query=query)] if compare else [])
    with err.status("generating"):
        answers = generate_inputs(generator, rows, config=GenerationConfig(max_new_tokens=max_new_tokens))
    if user is not None:
        rec = personalized.record
        extra = (f", adapter {rec.adapter}" if rec.adapter else "") + (", soft prompt" if rec.soft_prompt else "")
        err.print(
            f"[dim]{method}: scope {rec.scope}, {len(rec.retrieved)} items, {rec.prompt_tokens} prompt tokens"
            f"{extra}[/dim]"
        )
    if compare:
        side_by_side(console, answers[1], answers[0])
    else:
        console.print(answers[0])
