"""``tailorlm demo``: real data, real users, with and without personalization, then the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tailorlm.cli._common import console, get_settings


def demo(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(help="how many users to show")] = 3,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="then start the service (the main job)")] = True,
    port: Annotated[int | None, typer.Option(help="TCP port for the service (default: serve.port, 8000)")] = None,
    gains: Annotated[
        Path | None,
        typer.Option(
            help="gain table quoted under each case (default: benchmarks/results/gains/personalization_gains.json "
            "in the working directory, else the packaged copy; none: 'not measured')"
        ),
    ] = None,
) -> None:
    """Load real data, answer for real users with and without personalization, then serve on 127.0.0.1."""
    from tailorlm.demo import run_demo

    run_demo(get_settings(ctx), console=console, n_users=users, serve=serve, port=port, gains=gains)
