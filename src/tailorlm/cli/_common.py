"""Shared pieces of the ``tailorlm`` command line: the consoles and the construction of the
settings, the store and the (cached) embedder from the Typer context.

Heavy libraries are imported inside the functions, so importing this module stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tailorlm.settings import Settings

console = Console()
err = Console(stderr=True)


def get_settings(ctx: typer.Context) -> Settings:
    """The settings the root callback resolved from the global flags, the config file and the environment."""
    return ctx.obj["settings"]


def cached_embedder(settings: Settings):
    """The configured embedder behind a vector cache in the cache folder: persona discovery
    re-embeds a population's whole history in every process, minutes on a laptop."""
    from tailorlm.eval.cache import EMBEDDING_CACHE_FILE, CachedEmbedder
    from tailorlm.models import build_embedder

    return CachedEmbedder(build_embedder(settings), Path(settings.cache_dir) / EMBEDDING_CACHE_FILE)


def lazy_embedder(settings: Settings):
    """:func:`cached_embedder`, built on first use: a run that never embeds never loads it."""
    from tailorlm.models.embedders import LazyEmbedder

    return LazyEmbedder(lambda: cached_embedder(settings))


def open_store(ctx: typer.Context):
    """The store of the configured URL (created and migrated on first use)."""
    from tailorlm.data import Store

    return Store.from_settings(get_settings(ctx))
