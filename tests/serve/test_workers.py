"""``tailorlm serve --workers 2``: two processes behave as one for rate limits and key state."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tailorlm.data import Store
from tailorlm.serve.limits import SharedTokenBucket
from tailorlm.testing import FakeGenerator, openai_test_server

LIMIT = 12  # requests per key per minute: one token refills every 5 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, subprocess.Popen]]:
    tmp = tmp_path_factory.mktemp("workers")
    env = {
        **os.environ,
        "TAILORLM_CACHE_DIR": str(tmp / "cache"),
        "TAILORLM_CONFIG": str(tmp / "none"),
        "TAILORLM_SERVE__RATE_LIMIT_PER_MINUTE": str(LIMIT),
        "TAILORLM_SERVE__MEMORY": "false",
    }
    port = _free_port()
    with openai_test_server(FakeGenerator(name="upstream")) as upstream:
        cmd = [sys.executable, "-m", "tailorlm.cli", "--backend", "openai", "--base-url", upstream,
               "--model", "upstream", "serve", "--port", str(port), "--workers", "2"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            banner = ""
            for line in proc.stdout:
                banner += line
                if line.startswith("tailorlm on "):
                    break
            key = re.search(r"admin key.*?(tlm_[0-9a-f]{16}_[A-Za-z0-9_-]+)", banner, re.S)
            assert key, banner
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{url}/health", timeout=1).raise_for_status()
                    break
                except (httpx.TransportError, httpx.HTTPStatusError):
                    assert time.monotonic() < deadline and proc.poll() is None, "the workers did not come up"
                    time.sleep(0.1)
            yield url, key[1], proc
        finally:
            proc.terminate()
            proc.wait(30)


def _spray(url: str, key: str, n: int) -> list[int]:
    """``n`` concurrent requests, each on its own connection, so both workers take some."""

    def one(_: int) -> int:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            return c.get("/v1/users").status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_a_keys_limit_holds_across_two_workers(two_workers: tuple[str, str, subprocess.Popen]) -> None:
    url, admin, proc = two_workers
    assert len(_children(proc.pid)) >= 2  # uvicorn's supervisor runs two worker processes
    user_key = httpx.post(f"{url}/v1/users", json={"user_id": "w1"}, headers={"Authorization": f"Bearer {admin}"})
    assert user_key.status_code in (200, 201)
    made = httpx.post(f"{url}/v1/keys", json={"user_id": "w1"}, headers={"Authorization": f"Bearer {admin}"})
    key = made.json()["key"]
    start = time.monotonic()
    codes = _spray(url, key, 3 * LIMIT)
    refilled = int((time.monotonic() - start) * LIMIT / 60) + 1
    accepted = codes.count(200)
    # Per-process buckets would accept up to 2 x LIMIT; one shared bucket accepts LIMIT (+ refill).
    assert LIMIT <= accepted <= LIMIT + refilled, codes
    assert set(codes) == {200, 429}


def test_a_key_revoked_on_one_worker_is_refused_by_every_worker(
    two_workers: tuple[str, str, subprocess.Popen],
) -> None:
    url, admin, _ = two_workers
    headers = {"Authorization": f"Bearer {admin}"}
    httpx.post(f"{url}/v1/users", json={"user_id": "w2"}, headers=headers).raise_for_status()
    made = httpx.post(f"{url}/v1/keys", json={"user_id": "w2"}, headers=headers).json()
    assert set(_spray(url, made["key"], 8)) == {200}  # verified and cached by whichever workers took them
    assert httpx.delete(f"{url}/v1/keys/{made['key_id']}", headers=headers).status_code == 200
    assert set(_spray(url, made["key"], 8)) == {401}


def test_shared_bucket_spends_each_token_once_under_concurrency(tmp_path: Path) -> None:
    """Two store handles (as two processes would have) racing on one SQLite file."""
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    a, b = SharedTokenBucket(Store(url), 30), SharedTokenBucket(Store(url), 30)
    now = time.time()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (a if i % 2 else b).take("key:k", now=now), range(60)))
    assert sum(r is None for r in results) == 30
    assert all(r > 0 for r in results if r is not None)  # a refusal says how long to wait
    assert (a.take("key:k", now=now + 2.0)) is None  # 30/min: one token back after 2 s
