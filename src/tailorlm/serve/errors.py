"""One error shape for every failure: ``{"error": {"message", "type", "param", "code"}}``.

OpenAI's clients (and the foundation's HTTP backend) read ``error.message``, so every 4xx
and 5xx this service returns, from routing, validation, auth or a handler, uses that shape
and says what was wrong and where (``param`` names the field, e.g. ``body.messages[0].content``).
Middleware that answers before FastAPI's exception handling (size limits, auth) uses
:func:`error_response` directly, so the shape is the same there too.

Handlers raise :class:`ApiError` to choose a status themselves. A
:class:`~tailorlm.errors.TailorlmError` that escapes a handler gets the status
:data:`STATUS_BY_ERROR` assigns to its class (the nearest class in its MRO), with its
message; this table is the one place that maps tailorlm's errors to HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tailorlm.errors import (
    BackendError,
    ConfigError,
    DataError,
    FetchError,
    NotFoundError,
    SchemaVersionError,
    TailorlmError,
)

__all__ = [
    "STATUS_BY_ERROR",
    "ApiError",
    "CatchAllMiddleware",
    "error_body",
    "error_response",
    "format_loc",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("tailorlm.serve")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

#: The HTTP status of each tailorlm error class; subclasses not listed take their nearest
#: listed base's (``NoAdapterError`` -> ``NotFoundError`` -> 404).
STATUS_BY_ERROR: dict[type[TailorlmError], int] = {
    TailorlmError: 400,
    ConfigError: 400,
    DataError: 400,
    NotFoundError: 404,
    SchemaVersionError: 500,
    BackendError: 502,
    FetchError: 502,
}


def status_for(exc: TailorlmError) -> int:
    """The status :data:`STATUS_BY_ERROR` gives ``exc``'s class or its nearest listed base."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return STATUS_BY_ERROR[TailorlmError]


class ApiError(Exception):
    """Raised by handlers and services; turned into the JSON error shape with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def error_body(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    kind = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code, **(extra or {})}}


def error_response(status: int, message: str, *, headers: Mapping[str, str] | None = None, **kw: Any) -> JSONResponse:
    return JSONResponse(error_body(status, message, **kw), status_code=status, headers=dict(headers or {}))


def format_loc(loc: Sequence[Any]) -> str:
    """``("body", "messages", 0, "content")`` -> ``body.messages[0].content``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """A readable sentence for pydantic/FastAPI validation errors, and the first field at fault."""
    parts = []
    for err in errors[:5]:
        loc = format_loc(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            msg = f"not valid JSON ({(err.get('ctx') or {}).get('error', 'decode error')})"
        elif isinstance(err.get("input"), bytes) and tuple(err.get("loc", ())) == ("body",):
            msg = "must be a JSON object sent with 'Content-Type: application/json'"
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    first = format_loc(errors[0].get("loc", ())) if errors else None
    return "; ".join(parts) + more, first or None


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception FastAPI sees into the one JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code, headers=exc.headers, extra=exc.extra
        )

    @app.exception_handler(TailorlmError)
    async def _tailorlm_error(request: Request, exc: TailorlmError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return error_response(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc.errors())
        status = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        return error_response(status, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            message = f"method {request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
            headers["Allow"] = ", ".join(allowed)
        return error_response(exc.status_code, message, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 names only the first
    route's: GET for ``/v1/users``, which takes POST too)."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import compile_path

    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):  # included routers' routes, full paths
        regex, _, _ = compile_path(route.path)
        if regex.match(request.scope["path"]):  # the routed path (serve/paths.py may rewrite it)
            methods |= set(route.methods or ())
    return sorted(methods)


class CatchAllMiddleware:
    """Unexpected exceptions become a JSON 500 here, and are logged, not re-raised.

    Starlette hands an ``Exception`` handler's response to its outermost middleware, which
    then re-raises, and uvicorn closes the connection; the client can see a reset instead
    of the 500. Catching just outside the router keeps the one error shape and the
    connection. The message never quotes the exception (it can hold SQL parameters, i.e.
    other users' data); the log has it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for an error response: let the server close the stream
                raise
            message = f"internal error ({type(exc).__name__}); see the server log"
            await error_response(500, message, type="server_error")(scope, receive, send)
