"""``tailorlm serve``: the OpenAI-compatible API, the REST API for user data and the web workbench."""

from __future__ import annotations

from typing import Annotated

import typer

from tailorlm.cli._common import console, err, get_settings, open_store
from tailorlm.settings import Settings


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="interface to bind (default: serve.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: serve.port, 8000)")] = None,
    rotate_admin_key: Annotated[
        bool, typer.Option("--rotate-admin-key", help="revoke the admin key(s) and print a new one")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="worker processes, each with its own model (default: serve.workers, 1); "
            "rate limits and key state are shared through the store",
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API, the REST API for user data and the web workbench."""
    from tailorlm.serve import KeyStore, create_app

    settings = get_settings(ctx)
    overrides = {k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v is not None}
    settings = settings.model_copy(update={"serve": settings.serve.model_copy(update=overrides)})
    store = open_store(ctx)
    keys = KeyStore(store)
    rotated = keys.rotate_admin() if rotate_admin_key else None
    if settings.serve.workers > 1:
        key, application = rotated or keys.ensure_admin(), None
    else:
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
    if application is None:
        _serve_workers(settings)
    else:
        from tailorlm.serve.server import serve_forever

        serve_forever(application, host=settings.serve.host, port=settings.serve.port)


def _serve_workers(settings: Settings) -> None:
    """``--workers N``: uvicorn's supervisor starts N processes from the app factory."""
    import os

    import uvicorn

    from tailorlm.serve.app import WORKER_SETTINGS_ENV

    os.environ[WORKER_SETTINGS_ENV] = settings.model_dump_json()
    console.print(f"  {settings.serve.workers} worker processes, each loading the model", highlight=False)
    uvicorn.run(
        "tailorlm.serve.app:create_worker_app",
        factory=True,
        host=settings.serve.host,
        port=settings.serve.port,
        workers=settings.serve.workers,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
