"""The web workbench: one static page served by the API app, with no build step and no CDN.

The page (``static/index.html``, ``app.js``, ``render.js``, ``sse.js``, ``style.css``) asks for
an API key, keeps it in the tab's ``sessionStorage`` and talks only to the JSON API under
``/v1`` with it (the compare's answers arrive as server-sent events, read by ``sse.js``); a key may
also arrive once in the URL fragment (``/#key=...``, never sent to the server), which the page
reads and then removes from the address bar.

This router only serves those files, so it needs no auth: the page holds no user data until
the API has accepted a key. It deliberately serves a fixed list of assets, not a folder, so
no request path can reach any other file.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).with_name("static")

_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "render.js": "text/javascript; charset=utf-8",
    "sse.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

# The page loads only its own script and stylesheet and calls only this origin's API;
# ``no-referrer`` keeps the page's address out of every request it makes.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/", include_in_schema=False)
def workbench_page() -> FileResponse:
    """The workbench page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
def workbench_asset(name: str) -> FileResponse:
    """One of the page's assets; 404 for any other name."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no workbench asset named {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_HEADERS)
