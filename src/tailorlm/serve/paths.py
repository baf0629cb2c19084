"""User ids that contain ``/`` stay reachable: ``/v1/users/team%2Falice/documents``.

New ids may not contain ``/`` (the API refuses them), but a store filled by loaders
or by an older version may hold such ids, and every stored user must be readable,
exportable and deletable through the API. HTTP servers decode ``%2F`` before
routing, so ``team%2Falice`` would arrive as two path steps and match no route.

:class:`EncodedSlashMiddleware` re-decodes the raw path one segment at a time, so
a ``/`` that was percent-encoded inside a segment becomes :data:`SLASH` (NUL, which
no stored id may contain: the API refuses control characters and PostgreSQL
cannot store NUL in text), and the ``user_id`` convertor (routes declare
``{user_id:user_id}``) turns it back into ``/`` for the route. A literal ``%00``
in a path is refused (400) so it cannot alias an encoded ``/``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

from tailorlm.serve.errors import error_response

__all__ = ["SLASH", "EncodedSlashMiddleware", "UserIdConvertor", "register_convertors"]

SLASH = "\x00"
_ENCODED = re.compile(rb"%(2f|00)", re.IGNORECASE)


class UserIdConvertor(Convertor[str]):
    """One path segment, with an encoded ``/`` (see the module docstring) restored."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value.replace(SLASH, "/")

    def to_string(self, value: str) -> str:
        return value.replace("/", SLASH)


def register_convertors() -> None:
    """Make ``{user_id:user_id}`` available to route paths (idempotent)."""
    register_url_convertor("user_id", UserIdConvertor())


def decoded_path(raw_path: bytes) -> str | None:
    """The path with each segment decoded on its own; None when a segment holds a NUL."""
    segments = []
    for raw in raw_path.split(b"/"):
        text = unquote(raw.decode("latin-1"), encoding="utf-8", errors="surrogateescape")
        if SLASH in text:
            return None
        segments.append(text.replace("/", SLASH))
    return "/".join(segments)


class EncodedSlashMiddleware:
    """Route on the raw path when it holds ``%2F`` (or refuse ``%00``); else pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and _ENCODED.search(raw.split(b"?", 1)[0]):
            path = decoded_path(raw.split(b"?", 1)[0])
            if path is None:
                await error_response(400, "the URL path contains %00 (NUL), which no id may contain")(
                    scope, receive, send
                )
                return
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)
