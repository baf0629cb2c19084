"""The app factory: one FastAPI app per (settings, store, generator), no module-level state.

``create_app`` wires the pieces together (see the package docstring for the routes):
the store and its key table, the engine around the generator, the memory worker,
error handlers, middleware (outermost first: CORS only when origins are configured, auth
and rate limits, the body guard, the catch-all for unexpected errors), the API routers
and the workbench page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tailorlm._version import __version__
from tailorlm.data import Store
from tailorlm.models.base import Embedder, Generator
from tailorlm.models.embedders import LazyEmbedder
from tailorlm.serve.allocator import PeriodicTrim, fix_mmap_threshold, limit_arenas
from tailorlm.serve.auth import KeyStore
from tailorlm.serve.engine import Engine
from tailorlm.serve.errors import CatchAllMiddleware, install_error_handlers
from tailorlm.serve.limits import SharedTokenBucket
from tailorlm.serve.memory_worker import MemoryWorker
from tailorlm.serve.middleware import AuthMiddleware, BodyGuardMiddleware, TokenBucket
from tailorlm.serve.paths import EncodedSlashMiddleware
from tailorlm.serve.routes_compare import router as compare_router
from tailorlm.serve.routes_keys import router as keys_router
from tailorlm.serve.routes_openai import router as openai_router
from tailorlm.serve.routes_users import router as users_router
from tailorlm.serve.scheduler import Scheduler
from tailorlm.serve.service import Service
from tailorlm.settings import Settings, load_settings

__all__ = ["create_app", "create_worker_app"]

#: ``tailorlm serve --workers N`` hands each worker process its settings in this variable (JSON).
WORKER_SETTINGS_ENV = "TAILORLM_WORKER_SETTINGS_JSON"

log = logging.getLogger("tailorlm.serve")

DESCRIPTION = """\
Personalized, OpenAI-compatible chat over each user's own data, plus REST for that data.

Authenticate with `Authorization: Bearer <key>`: the admin key (shown once, on first start)
or a user-scoped key (`POST /v1/keys`), which reads and writes only its own user.
Errors are always `{"error": {"message", "type", "param", "code"}}`.
"""


def _memory_factory(store: Store, generator: Generator) -> Any:
    """Build ``tailorlm.memory.Memory`` on first use; None (memory off) if it is not installed."""
    try:
        from tailorlm.memory import Memory, MemoryConfig
    except ImportError as exc:
        log.warning("conversational memory is unavailable (%s); conversations are not observed", exc)
        return None
    return Memory(store, generator, config=MemoryConfig())


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
    admin_key: str | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: defaults to :func:`~tailorlm.settings.load_settings`; ``settings.serve``
            holds the limits, CORS origins and the memory switch.
        store: defaults to the settings' store.
        generator: defaults to the settings' generator (loads the local model).
        embedder: defaults to the settings' embedder, loaded only when a method needs it.
        admin_key: register this admin key (``tlm_<16 hex>_<secret>``); without it a key is
            generated when the store has no admin key yet, and is available once as
            ``app.state.admin_key_created`` (``tailorlm serve`` prints it).
    """
    settings = settings or load_settings()
    fix_mmap_threshold(settings.serve.malloc_mmap_threshold)
    limit_arenas(settings.serve.malloc_arena_max)
    store = store or Store.from_settings(settings)
    engine = _build_engine(settings, store, generator, embedder)
    shared = settings.serve.workers > 1  # other processes serve the same keys and limits
    keys = KeyStore(store, shared=shared)
    created = keys.ensure_admin(admin_key)
    memory = MemoryWorker(lambda: _memory_factory(store, engine.generator)) if settings.serve.memory else None
    serve = settings.serve
    scheduler = Scheduler(
        engine.generator,
        max_batch_size=serve.max_batch_size,
        max_queue=serve.max_queue,
        max_per_key=serve.max_concurrent_per_key,
        request_timeout_s=serve.request_timeout_s,
        prefill_together=_prefill_together(serve.prefill_together, engine.generator),
        prefill_first=serve.prefill_first,
        prefill_tokens=serve.prefill_tokens,
        interrupt_steps=serve.interrupt_steps,
        max_stall_s=serve.max_stall_s,
    )
    engine.generator.scheduler = scheduler  # the service's own model calls join the batch too
    service = Service(settings=settings, store=store, engine=engine, keys=keys, memory=memory, scheduler=scheduler)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        trimmer = PeriodicTrim(settings.serve.malloc_trim_interval_s)
        trimmer.start()
        yield
        trimmer.stop()
        scheduler.close()
        if memory is not None:
            memory.stop()

    app = FastAPI(title="tailorlm", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = service
    app.state.memory_queue = memory.queue if memory is not None else None
    app.state.admin_key_created = created
    install_error_handlers(app)
    _add_routes(app)
    _add_middleware(app, settings, keys, store)
    return app


def _prefill_together(setting: str, generator: Any) -> bool:
    """``[serve] prefill_together``: on, off, or auto = the local model computes in bf16, which
    ``dtype = "auto"`` picks only where the CPU multiplies it natively (AMX, AVX512-BF16)."""
    if setting != "auto":
        return setting == "on"
    return getattr(getattr(generator, "inner", generator), "dtype", None) == "bfloat16"


def _build_engine(settings: Settings, store: Store, generator: Generator | None, embedder: Embedder | None) -> Engine:
    """The engine around the given (or the settings') generator and embedder."""
    if generator is None:
        from tailorlm.models import build_generator

        generator = build_generator(settings)
    if embedder is None:
        from tailorlm.models import build_embedder

        embedder = LazyEmbedder(lambda: build_embedder(settings))  # type: ignore[assignment]
    return Engine(
        store,
        generator,
        embedder=embedder,
        pooled_context=settings.serve.pooled_context,
        max_prompt_tokens=settings.serve.max_prompt_tokens,
        refuse_stale=settings.serve.refuse_stale_artifacts,
    )


def _add_routes(app: FastAPI) -> None:
    """``/health``, the API routers under ``/v1`` and the workbench."""

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness, without auth (for load balancers)."""
        return {"status": "ok"}

    for router in (openai_router, users_router, compare_router, keys_router):
        app.include_router(router, prefix="/v1")
    _mount_workbench(app)


def _add_middleware(app: FastAPI, settings: Settings, keys: KeyStore, store: Store) -> None:
    """The middleware stack; add_middleware wraps, so the last added is the outermost."""
    per_minute = settings.serve.rate_limit_per_minute
    limiter = SharedTokenBucket(store, per_minute) if keys.shared else TokenBucket(per_minute)
    app.add_middleware(EncodedSlashMiddleware)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.serve.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=keys, limiter=limiter)
    if settings.serve.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.serve.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,  # keys travel in a header, never in cookies
            max_age=600,
        )


def _mount_workbench(app: FastAPI) -> None:
    """Serve the web workbench (``serve/workbench.py``) at ``/`` when it is installed."""
    try:
        from tailorlm.serve.workbench import router as workbench_router
    except ImportError as exc:  # pragma: no cover - the workbench ships with the package
        log.warning("web workbench unavailable: %s", exc)
        return
    app.include_router(workbench_router)


def create_worker_app() -> FastAPI:
    """The app of one ``tailorlm serve --workers N`` process (a uvicorn factory).

    uvicorn starts workers from an import string, so the parent's resolved settings
    (config file, environment and flags) travel as JSON in :data:`WORKER_SETTINGS_ENV`;
    the parent has already created or rotated the admin key, so workers never print one.
    """
    import os

    raw = os.environ.get(WORKER_SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else load_settings()
    return create_app(settings)
