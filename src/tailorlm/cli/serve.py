"""``tailorlm serve``: the OpenAI-compatible API, the REST API for user data and the web workbench."""

from __future__ import annotations

from typing import Annotated

import typer

from tailorlm.cli._common import console, err, get_settings, open_store


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

    settings = get_settings(ctx)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update={"serve": settings.serve.model_copy(update=overrides)})
    store = open_store(ctx)
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
