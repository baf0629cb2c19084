"""The ``tailorlm`` command line (Typer + Rich).

Heavy libraries (torch, transformers, sentence-transformers) are imported inside
the commands that need them, so ``tailorlm --help`` and data commands start fast.
Global flags override the config file and ``TAILORLM_*`` variables (see settings.py).

One module per command (group): ``info``, ``generate``, ``run``, ``serve``, ``bench``,
``demo``, ``data`` and ``train``; shared helpers live in ``_common``. This module builds
the root ``app`` (the global flags are its callback) and adds them in the order ``--help`` lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tailorlm.cli import bench, data, demo, generate, info, run, serve, train
from tailorlm.cli._common import err
from tailorlm.settings import load_settings

__all__ = ["app"]

app = typer.Typer(help="Personalize LLMs for their users.", no_args_is_help=True, add_completion=False)


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


# Commands first, then the groups: the order `tailorlm --help` has always listed them in.
app.command()(info.info)
app.command()(generate.generate)
app.command()(run.run)
app.command()(serve.serve)
app.command()(bench.bench)
app.command()(demo.demo)
app.add_typer(data.data_app, name="data")
app.add_typer(train.train_app, name="train")
