"""The service test harness: a real uvicorn on 127.0.0.1 over a temp SQLite store.

Imported by the test modules (``from serve_harness import ...``; the tests folders are
not packages) and by ``conftest.py``, which turns :func:`live_server` into the
module-scoped ``live`` fixture. Seed data is two small users written directly as records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tailorlm.data import Document, Interaction, Preference, Store, User
from tailorlm.models.base import Generator
from tailorlm.serve import create_app, new_api_key, run_in_thread
from tailorlm.settings import Settings, load_settings
from tailorlm.testing import FakeGenerator

ALICE_DOCS = [
    "Warm nylon strings made my classical guitar sound mellow and round.",
    "The pop filter is sturdy; my vocals at home got much cleaner.",
    "This tuner clips on the headstock and reads fast even in a noisy room.",
]
BOB_DOCS = [
    "Loud distortion pedal, perfect for metal riffs at band rehearsal.",
    "Heavy gauge strings hold drop-C tuning without buzzing.",
]


def seed(store: Store) -> None:
    """Two users with attributes, documents, an interaction and a preference each."""
    store.add(
        [
            User(user_id="alice", age=34, occupation="teacher", attributes={"plays": "classical guitar"}),
            User(user_id="bob", age=22, occupation="student"),
            *[Document(user_id="alice", doc_kind="review", text=t, rating=5, timestamp=1000 + i)
              for i, t in enumerate(ALICE_DOCS)],
            *[Document(user_id="bob", doc_kind="review", text=t, rating=4, timestamp=2000 + i)
              for i, t in enumerate(BOB_DOCS)],
            Interaction(user_id="alice", item_id="tuner-1", interaction="purchase", timestamp=1500),
            Interaction(user_id="bob", item_id="pedal-9", interaction="rating", value=5, timestamp=2500),
            Preference(user_id="alice", prompt="Suggest strings", chosen="Nylon, warm.", rejected="Steel, bright."),
            Preference(user_id="bob", prompt="Suggest strings", chosen="Heavy gauge.", rejected="Light gauge."),
        ]
    )  # fmt: skip


def settings_for(tmp: Path, **serve: Any) -> Settings:
    """Settings that ignore the developer's config file and environment-set serve options."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILORLM_CONFIG", str(tmp / "no-config.toml"))
        return load_settings(cache_dir=tmp / "cache", store_url=f"sqlite:///{tmp / 'store.db'}", serve=serve)


@dataclass
class Live:
    """A running server: its URL, app, store, generator and keys."""

    url: str
    app: Any
    store: Store
    generator: Any
    admin_key: str
    keys: dict[str, str] = field(default_factory=dict)  # user id -> user-scoped key

    def client(self, key: str | None = None, *, timeout: float = 30, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, **kw)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def user_key(self, user_id: str) -> str:
        """A user-scoped key for ``user_id``, created through the API once."""
        if user_id not in self.keys:
            with self.admin() as c:
                r = c.post("/v1/keys", json={"user_id": user_id})
                r.raise_for_status()
                self.keys[user_id] = r.json()["key"]
        return self.keys[user_id]

    def as_user(self, user_id: str) -> httpx.Client:
        return self.client(self.user_key(user_id))


@contextlib.contextmanager
def live_server(tmp: Path, *, generator: Generator | None = None, seeded: bool = True, **serve: Any) -> Iterator[Live]:
    """Start the app on 127.0.0.1 (a free port) over a fresh store in ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    settings = settings_for(tmp, **serve)
    store = Store(settings.resolved_store_url, files_dir=tmp / "files")
    if seeded:
        seed(store)
    generator = generator or FakeGenerator()
    admin_key = new_api_key()
    app = create_app(settings, store=store, generator=generator, admin_key=admin_key)
    try:
        with run_in_thread(app) as url:
            yield Live(url=url, app=app, store=store, generator=generator, admin_key=admin_key)
    finally:
        store.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll a condition the server reaches on its own (not a sleep that hopes for a race)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
