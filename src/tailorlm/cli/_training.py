"""Helpers of ``tailorlm train``: the trainer config from the command-line options and the
training context (base model, adapter registry, lazy embedder).

Heavy libraries are imported inside the functions: building the context loads the base model.
"""

from __future__ import annotations

import json

import typer

from tailorlm.cli._common import err, get_settings, lazy_embedder


def train_config(steps, lr, r, batch_size, max_length, init_from, balanced, options) -> dict:
    """The trainer config of the options that were given; --option KEY=VALUE values are JSON when they parse."""
    config: dict = {}
    for name, value in (("steps", steps), ("lr", lr), ("r", r), ("batch_size", batch_size)):
        if value is not None:
            config[name] = value
    if max_length is not None:
        config["max_length"] = max_length
    if init_from:
        config["init_from"] = init_from
    if balanced:
        config["balanced"] = True
    for opt in options or []:
        key, sep, raw = opt.partition("=")
        if not sep or not key:
            err.print(f"[red]--option must be KEY=VALUE, got {opt!r}[/red]")
            raise typer.Exit(2)
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def train_context(ctx: typer.Context, store, users=None, progress=None):
    """Load the base model (the local backend only) and wrap it with the store's adapter registry."""
    from tailorlm.adapters import AdapterRegistry
    from tailorlm.models import build_generator
    from tailorlm.models.base import AdapterGenerator, model_fingerprint
    from tailorlm.personalize.training.jobs import TrainContext

    settings = get_settings(ctx)
    with err.status("loading the base model"):
        generator = build_generator(settings)
    if not isinstance(generator, AdapterGenerator):
        err.print("[red]training needs the local backend (--backend local)[/red]")
        raise typer.Exit(2)
    registry = AdapterRegistry(store, base_model=model_fingerprint(generator))
    # Built on first use: soft prompts and clustered personas embed, LoRA and DPO do not.
    embedder = lazy_embedder(settings)
    return TrainContext(store, registry, generator, embedder=embedder, users=users, progress=progress)
