"""Pure ASGI middleware that answers before any route runs: auth + rate limit, and the body guard.

Both are plain ASGI rather than FastAPI dependencies on purpose: FastAPI reads and
parses a request's body *before* it resolves dependencies, so a dependency could not
stop an unauthenticated client from making the server read and parse a body, nor
count malformed requests against a rate limit.

Order (outermost first): CORS (only when origins are configured) -> :class:`AuthMiddleware`
-> :class:`BodyGuardMiddleware` -> ``CatchAllMiddleware`` (errors.py) -> the app.
"""

from __future__ import annotations

import json
import math
import time

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tailorlm.serve.auth import KeyStore
from tailorlm.serve.errors import error_response
from tailorlm.serve.limits import SharedTokenBucket

__all__ = ["AuthMiddleware", "BodyGuardMiddleware", "TokenBucket"]


class TokenBucket:
    """Per-key token buckets: ``per_minute`` tokens refill evenly; a burst may spend them all.

    In memory and per process; several workers share :class:`~tailorlm.serve.limits.SharedTokenBucket`.
    Only the event loop touches it, so it needs no lock. ``per_minute=0`` disables it.
    """

    def __init__(self, per_minute: int, *, max_keys: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float | None:
        """Spend one token; return None if allowed, else the seconds until one is available."""
        if self.capacity <= 0:
            return None
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self.max_keys:  # forget the buckets that are full again
            full = [k for k, (tk, ts) in self._buckets.items() if tk + (now - ts) * self.rate >= self.capacity]
            for k in full:
                del self._buckets[k]
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


class AuthMiddleware:
    """``Authorization: Bearer <key>`` on every path under ``prefix``; sets ``request.state.principal``.

    Failed attempts are rate-limited per client address, so guessing keys (each guess
    can cost a scrypt) is throttled like any other traffic.
    """

    def __init__(
        self, app: ASGIApp, *, keys: KeyStore, limiter: TokenBucket | SharedTokenBucket, prefix: str = "/v1/"
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization") or ""
        scheme, _, key = header.partition(" ")
        client = (scope.get("client") or ("unknown", 0))[0]
        if scheme.lower() != "bearer" or not key.strip():
            await self._deny(
                scope, receive, send, client, "missing API key: send the header 'Authorization: Bearer <key>'"
            )
            return
        key = key.strip()
        # With keys shared between processes even a cached key is checked in the database.
        principal = None if self.keys.shared else self.keys.cached(key)
        principal = principal or await anyio.to_thread.run_sync(self.keys.verify, key)
        if principal is None:
            await self._deny(scope, receive, send, client, "invalid or revoked API key")
            return
        if (wait := await self._take(f"key:{principal.key_id}")) is not None:
            await _too_many(scope, receive, send, wait)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _take(self, bucket: str) -> float | None:
        """Spend from ``bucket``; a limiter backed by the store runs off the event loop."""
        if getattr(self.limiter, "blocking", False):
            return await anyio.to_thread.run_sync(self.limiter.take, bucket)
        return self.limiter.take(bucket)

    async def _deny(self, scope: Scope, receive: Receive, send: Send, client: str, message: str) -> None:
        if (wait := await self._take(f"anon:{client}")) is not None:
            await _too_many(scope, receive, send, wait)
            return
        response = error_response(401, message, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


async def _too_many(scope: Scope, receive: Receive, send: Send, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    response = error_response(
        429,
        f"rate limit exceeded for this API key; retry in {seconds} s (serve.rate_limit_per_minute)",
        headers={"Retry-After": str(seconds)},
    )
    await response(scope, receive, send)


class BodyGuardMiddleware:
    """Reads the body once, up to ``max_bytes``, and refuses what no route should see.

    - larger than ``max_bytes`` (by Content-Length, or counted while reading a chunked
      body): 413, without reading the rest;
    - a JSON content type whose bytes are not UTF-8 or not JSON: 400 naming the byte,
      line and column (FastAPI would answer a bare "error parsing the body").

    The buffered body is then replayed to the app, so routes read it as usual.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await error_response(400, f"invalid Content-Length header {declared!r}")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(_header(scope, b"content-type")):
            # Small bodies are checked on the loop; big ones (up to max_bytes) in a thread.
            small = len(body) <= 64 * 1024
            problem = _json_problem(body) if small else await anyio.to_thread.run_sync(_json_problem, body)
            if problem is not None:
                await error_response(400, problem, param="body")(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices for streaming responses

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"request body is larger than the limit of {self.max_bytes:,} bytes (serve.max_body_bytes); "
            "split it into smaller requests, or load big files with `tailorlm data load`"
        )
        await error_response(413, message, param="body", headers={"Connection": "close"})(scope, receive, send)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or main.endswith("+json")


def _json_problem(body: bytes) -> str | None:
    """Why ``body`` is not UTF-8 JSON, with where; None when it is fine."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        col = exc.start - (body.rfind(b"\n", 0, exc.start) + 1) + 1
        return (
            f"request body is not valid UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start} "
            f"(line {line}, column {col}) ({exc.reason})"
        )
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"request body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    except RecursionError:
        return "request body is not valid JSON: nested too deeply"
    return None
