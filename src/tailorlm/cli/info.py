"""``tailorlm info``: what the command line is configured to use."""

from __future__ import annotations

import typer
from rich.table import Table

from tailorlm.cli._common import console, get_settings, open_store


def info(ctx: typer.Context) -> None:
    """Store URL, schema version, configured models and row counts."""
    s = get_settings(ctx)
    store = open_store(ctx)
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
