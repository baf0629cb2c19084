"""Keys (hashed at rest, admin-only management, first-start admin key), rate limits, CORS,
body size limits, and the store migration that added the key table."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from serve_harness import Live, live_server, settings_for
from sqlalchemy import inspect, select, text

from tailorlm.data import Store
from tailorlm.data import _tables as t
from tailorlm.data._migrations import SCHEMA_VERSION, migrate
from tailorlm.serve import KeyStore, create_app, new_api_key
from tailorlm.serve.auth import parse_api_key
from tailorlm.serve.middleware import TokenBucket
from tailorlm.settings import ServeSettings
from tailorlm.testing import FakeGenerator


def test_keys_are_stored_only_as_salted_hashes(live: Live) -> None:
    key = live.user_key("alice")
    secret = key.split("_", 2)[2]
    with live.store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(t.api_keys)).mappings()]
    dump = repr(rows)
    assert secret not in dump and live.admin_key.split("_", 2)[2] not in dump
    assert {r["role"] for r in rows} == {"admin", "user"}
    assert all(len(r["hash"]) == 64 and len(r["salt"]) == 32 for r in rows)
    assert len({r["salt"] for r in rows}) == len(rows)  # a salt per key


def test_key_management_is_admin_only(live: Live) -> None:
    with live.as_user("alice") as c:
        for method, path, body in [("POST", "/v1/keys", {"user_id": "alice"}), ("GET", "/v1/keys", None)]:
            r = c.request(method, path, json=body)
            assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]
    with live.admin() as c:
        listed = c.get("/v1/keys", params={"user_id": "alice"}).json()["data"]
        assert listed and all(
            set(k) == {"key_id", "role", "user_id", "label", "created_at", "revoked_at"} for k in listed
        )


def test_revoked_and_wrong_keys_are_refused(live: Live) -> None:
    with live.admin() as c:
        created = c.post("/v1/keys", json={"user_id": "bob", "label": "to revoke"}).json()
    with live.client(created["key"]) as c:
        assert c.get("/v1/users/bob").status_code == 200
    with live.admin() as c:
        assert c.delete(f"/v1/keys/{created['key_id']}").json()["revoked_at"] is not None
        assert c.delete(f"/v1/keys/{created['key_id']}").status_code == 404
        own = live.app.state.service.keys.verify(live.admin_key).key_id
        assert c.delete(f"/v1/keys/{own}").status_code == 409  # not the key in use
    with live.client(created["key"]) as c:
        r = c.get("/v1/users/bob")
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid or revoked API key"
    tampered = created["key"][:-4] + "AAAA"
    for header in [f"Bearer {tampered}", "Bearer not-a-key", f"Basic {live.admin_key}", "Bearer"]:
        r = httpx.get(f"{live.url}/v1/models", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_admin_key_is_generated_once_on_first_start(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = Store(settings.resolved_store_url)
    first = create_app(settings, store=store, generator=FakeGenerator())
    key = first.state.admin_key_created
    assert key and KeyStore(store).verify(key).is_admin
    assert create_app(settings, store=store, generator=FakeGenerator()).state.admin_key_created is None
    rotated = KeyStore(store).rotate_admin()
    assert KeyStore(store).verify(key) is None and KeyStore(store).verify(rotated).is_admin
    with pytest.raises(ValueError, match="admin_key must look like"):
        create_app(settings, store=store, generator=FakeGenerator(), admin_key="hunter2")
    store.close()


def test_rate_limit_answers_429_with_retry_after_per_key(tmp_path: Path) -> None:
    with live_server(tmp_path, memory=False, rate_limit_per_minute=3) as server:
        user_key = server.user_key("alice")  # spends one of the admin key's three tokens
        with server.admin() as c:
            codes = [c.get("/v1/models").status_code for _ in range(3)]
            r = c.get("/v1/models")
        assert codes == [200, 200, 429] and r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1 and "rate limit" in r.json()["error"]["message"]
        with server.client(user_key) as c:  # another key has its own bucket
            assert c.get("/v1/users/alice").status_code == 200


def test_token_bucket_refills_evenly() -> None:
    bucket = TokenBucket(60)  # one per second, bursts of 60
    assert all(bucket.take("k", now=0.0) is None for _ in range(60))
    assert bucket.take("k", now=0.0) == pytest.approx(1.0)
    assert bucket.take("k", now=1.0) is None and bucket.take("k", now=1.0) is not None
    assert TokenBucket(0).take("k") is None  # 0 = unlimited


def test_cors_is_off_by_default_and_exact_when_configured(live: Live, tmp_path: Path) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(f"{live.url}/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    headers = {"Origin": "https://evil.example", "Authorization": f"Bearer {live.admin_key}"}
    r = httpx.get(f"{live.url}/v1/models", headers=headers)
    assert "access-control-allow-origin" not in r.headers
    with live_server(tmp_path, memory=False, cors_origins=["https://app.example"]) as server:
        ok = httpx.options(f"{server.url}/v1/chat/completions", headers={**preflight, "Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        bad = httpx.options(f"{server.url}/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in bad.headers
    with pytest.raises(ValueError, match="exact origins"):
        ServeSettings(cors_origins=["*"])


def test_body_limit_by_header_and_by_counting(tmp_path: Path) -> None:
    with live_server(tmp_path, memory=False, max_body_bytes=4096) as server, server.admin() as c:
        r = c.post("/v1/users/alice/documents", json={"text": "x" * 5000})
        assert r.status_code == 413 and "4,096 bytes" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: the server must count
            for _ in range(10):
                yield b"x" * 1000

        r = c.post("/v1/users/alice/upload", content=chunks())
        assert r.status_code == 413
        assert c.post("/v1/users/alice/documents", json={"text": "x" * 3000}).status_code == 201  # under the limit


def test_a_version_1_store_is_migrated_to_add_the_key_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    store = Store(url)
    with store.engine.begin() as conn:  # make it look like a store written before the service existed
        t.api_keys.drop(conn)
        conn.execute(text("UPDATE tailorlm_meta SET value='1' WHERE key='schema_version'"))
    store.close()
    store = Store(url)  # reopening migrates
    assert store.schema_version == SCHEMA_VERSION >= 2
    assert inspect(store.engine).has_table("api_keys")
    assert migrate(store.engine) == SCHEMA_VERSION
    key = KeyStore(store).create(role="user", user_id="u1")
    assert KeyStore(store).verify(key).user_id == "u1"
    assert new_api_key() != new_api_key()


def test_concurrent_checks_of_one_uncached_key_run_scrypt_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a cached key expires every client's next request checks it: one scrypt must serve all
    (each costs 16 MiB the allocator keeps: the soak benchmark's RSS grew 2.8x without this)."""
    import threading

    import tailorlm.serve.auth as auth

    calls: list[int] = []
    real = auth._hash

    def counted(secret: str, salt: str) -> str:
        calls.append(1)
        return real(secret, salt)

    keys = KeyStore(Store(f"sqlite:///{tmp_path / 'k.db'}"))
    key = keys.create(role="admin")
    monkeypatch.setattr(auth, "_hash", counted)
    start = threading.Barrier(20)
    results: list[object] = []

    def check() -> None:
        start.wait()
        results.append(keys.verify(key))

    threads = [threading.Thread(target=check) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(results) == 20 and all(r is not None and r.role == "admin" for r in results)
    assert len(calls) == 1
    assert keys.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # a wrong secret is still refused


def test_an_expired_cached_key_is_rechecked_by_its_row_not_by_scrypt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its TTL a remembered key costs one indexed read (a revocation by another replica is
    seen), never a second scrypt (16 MiB each: a step in the soak benchmark's RSS)."""
    import tailorlm.serve.auth as auth

    calls: list[int] = []
    real = auth._hash

    def counted(secret: str, salt: str) -> str:
        calls.append(1)
        return real(secret, salt)

    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    here = KeyStore(store, cache_ttl_s=0.0)  # every cached entry is already past its TTL
    elsewhere = KeyStore(store)  # another replica over the same store
    key = here.create(role="user", user_id="u1")
    other = here.create(role="user", user_id="u2")
    monkeypatch.setattr(auth, "_hash", counted)
    assert [here.verify(key).user_id for _ in range(5)] == ["u1"] * 5
    assert here.verify(other).user_id == "u2"
    assert len(calls) == 2  # one scrypt per key, however many expiries
    assert elsewhere.revoke(parse_api_key(key)[0])
    assert here.verify(key) is None
    assert here.verify(other).user_id == "u2"
    assert len(calls) == 2
