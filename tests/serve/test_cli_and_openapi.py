"""``tailorlm serve`` as a user starts it, and the OpenAPI spec against the routes that exist."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.routing import iter_route_contexts
from serve_harness import Live

from tailorlm.testing import FakeGenerator, openai_test_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tailorlm_serve_prints_the_admin_key_once_and_serves(tmp_path: Path) -> None:
    """The CLI end to end, its model an OpenAI-compatible upstream (so no local model loads)."""
    env = {**os.environ, "TAILORLM_CACHE_DIR": str(tmp_path / "cache"), "TAILORLM_CONFIG": str(tmp_path / "none")}
    port = _free_port()
    with openai_test_server(FakeGenerator(name="upstream")) as upstream:
        cmd = [sys.executable, "-m", "tailorlm.cli", "--backend", "openai", "--base-url", upstream,
               "--model", "upstream", "serve", "--port", str(port)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines = []
            for line in proc.stdout:  # the banner comes before uvicorn starts
                lines.append(line)
                if line.startswith("tailorlm on "):
                    break
            banner = "".join(lines)
            key = re.search(r"admin key.*?(tlm_[0-9a-f]{16}_[A-Za-z0-9_-]+)", banner, re.S)
            assert key, banner
            url = f"http://127.0.0.1:{port}"
            assert f"tailorlm on {url}" in banner and "curl" in proc.stdout.readline()
            deadline = time.monotonic() + 30
            while True:  # uvicorn binds right after the banner
                try:
                    httpx.get(f"{url}/health", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, "the server did not come up"
                    time.sleep(0.05)
            headers = {"Authorization": f"Bearer {key[1]}"}
            r = httpx.post(
                f"{url}/v1/chat/completions", headers=headers, timeout=30,
                json={"model": "upstream", "messages": [{"role": "user", "content": "hi"}]},
            )  # fmt: skip
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: hi"
        finally:
            proc.terminate()
            proc.wait(30)
    db = tmp_path / "cache" / "tailorlm.db"
    secret = key[1].split("_", 2)[2]  # the secret itself may contain "_" (URL-safe alphabet)
    assert db.exists() and secret and secret.encode() not in db.read_bytes()  # hashed at rest


def test_openapi_documents_every_route_with_auth_and_errors(live: Live) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    for route in iter_route_contexts(live.app.routes):
        if not getattr(route, "include_in_schema", False):
            continue
        for method in route.methods - {"HEAD"}:
            assert (method, route.path_format) in documented, f"{method} {route.path_format} is missing from the spec"
    for path, ops in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            assert op.get("security") == [{"HTTPBearer": []}], f"{method} {path} does not say it needs a key"
            assert {"401", "403", "422", "429"} <= set(op["responses"]), f"{method} {path}"
            assert op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    compare = spec["paths"]["/v1/users/{user_id}/compare"]["post"]
    assert {"application/json", "text/event-stream"} <= set(compare["responses"]["200"]["content"])
    upload = spec["paths"]["/v1/users/{user_id}/upload"]["post"]
    assert "application/x-ndjson" in upload["requestBody"]["content"]
    schemas = spec["components"]["schemas"]
    assert schemas["ChatCompletionRequest"]["required"] == ["model", "messages"]
    assert "tailorlm" in schemas["ChatCompletion"]["properties"]


def test_every_status_the_key_and_user_routes_return_is_in_the_spec(live) -> None:  # type: ignore[no-untyped-def]
    spec = live.app.openapi()
    assert "409" in spec["paths"]["/v1/keys/{key_id}"]["delete"]["responses"]  # self-revoke
    assert "409" in spec["paths"]["/v1/users/{user_id}/documents"]["post"]["responses"]  # body/path users differ
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"400", "404", "429", "503", "504"} <= set(chat)
