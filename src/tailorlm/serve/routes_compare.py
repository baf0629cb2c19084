"""``POST /v1/users/{user_id}/compare``: the personalized and the baseline answer to one message.

The workbench's side-by-side view. Both rows join the scheduler's running decode batch at
once (a refusal of the second, or a disconnect, cancels both), so they are decoded
together, not one after the other. It has its own module because, unlike the other user
routes, it streams and owns model rows that must be cancelled however the request ends.

Without ``stream`` the answer is one JSON :class:`~tailorlm.serve.schemas.CompareResponse`
once both are done. With ``"stream": true`` it is server-sent events, following the chat
route's conventions (``data: <JSON>`` lines, ``data: [DONE]`` last); every event names its
``side`` (``personalized`` or ``baseline``):

- ``{"type": "delta", "side", "delta"}``: text as the scheduler decodes it; a side's deltas
  concatenate to its final ``text``;
- ``{"type": "done", "side", "text", "finish_reason", "usage"}`` once per side, the
  personalized one with ``tailorlm`` (retrieved items, scope, prompt tokens), the record
  the JSON response has;
- ``{"type": "error", "side", "error": {"message", "type", "param", "code"}}`` when a row
  fails after the stream began (e.g. the time limit); the other row is cancelled and the
  stream ends with ``[DONE]``, as a failed JSON compare fails whole.

The 200 is sent once the personalized row is running, so what fails before that (unknown
user or method, a prompt too long, 429, a failed prefill) is a JSON error with its status.
A client that disconnects cancels both rows, also while they still wait for the batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

import tailorlm.serve.schemas as s
from tailorlm.models.base import GenerationConfig
from tailorlm.serve.auth import Principal, authorize
from tailorlm.serve.engine import Prepared
from tailorlm.serve.errors import ApiError, error_body
from tailorlm.serve.paths import register_convertors
from tailorlm.serve.scheduler import Completion, Scheduler, Ticket, until_disconnect
from tailorlm.serve.service import Service, get_principal, get_service

__all__ = ["SIDES", "router"]

log = logging.getLogger("tailorlm.serve")

SIDES = ("personalized", "baseline")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429, 502, 503, 504)
}
_STREAM_DOC = (
    'With "stream": true, server-sent events: `data: <JSON>` per event, each naming its `side` '
    '(personalized | baseline): {"type": "delta", "side", "delta"} as text is decoded; {"type": '
    '"done", "side", "text", "finish_reason", "usage"} per side (the personalized one with '
    '`tailorlm`); {"type": "error", "side", "error": {...}} if a row fails mid-stream; then '
    "`data: [DONE]`."
)
_STREAM_200 = {
    200: {
        "description": "Both answers (JSON), or " + _STREAM_DOC,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
register_convertors()  # "{user_id:user_id}": ids with an encoded "/" (serve/paths.py)
router = APIRouter(prefix="/users", tags=["users"], responses=_ERRORS)


@router.post("/{user_id:user_id}/compare", response_model=s.CompareResponse, responses=_STREAM_200)
async def compare(
    user_id: str,
    request: Request,
    body: s.CompareRequest = Body(...),
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> Any:
    """The personalized and the non-personalized answer to one message, side by side.

    ``"stream": true`` sends both as server-sent events while they are decoded (see the 200
    response). A client that disconnects cancels both rows."""
    authorize(principal, user_id)
    pers, base = await svc.generate(svc.engine.prepare_compare, user_id, body.method, body.message, body.max_tokens)
    config = GenerationConfig(max_new_tokens=body.max_tokens)
    tickets: list[Ticket] = []
    handed_over = False
    try:  # a refusal of the second row, an error or a disconnect cancels both
        for p in (pers, base):
            tickets.append(svc.scheduler.submit(p.row, config, key=principal.key_id, prompt_tokens=p.prompt_tokens))
        if body.stream:
            # Watched for a disconnect: in a full batch the rows may wait long before their first token.
            await until_disconnect(request, tickets[0].started(), svc.scheduler, tickets)
            events = _events(svc, user_id, body.message, (pers, base), tickets)
            handed_over = True
            return _RowsStream(events, release=lambda: _cancel_unfinished(svc.scheduler, tickets))
        both = asyncio.gather(*(t.result() for t in tickets))
        text, baseline = (done.text for done in await until_disconnect(request, both, svc.scheduler, tickets))
    finally:
        if not handed_over:
            _cancel_unfinished(svc.scheduler, tickets)
    svc.remember(user_id, [{"role": "user", "content": body.message}, {"role": "assistant", "content": text}])
    return s.CompareResponse(
        personalized=s.PersonalizedAnswer(text=text, tailorlm=s.TailorlmUsage(**pers.usage)),
        baseline=s.BaselineAnswer(text=baseline),
    )


def _cancel_unfinished(scheduler: Scheduler, tickets: list[Ticket]) -> None:
    for t in tickets:
        if not t.done:
            scheduler.cancel(t)


class _RowsStream(StreamingResponse):
    """An SSE response that cancels its rows however it ends. Starlette cancels the body
    iterator on a disconnect, but one cancelled before its first chunk never ran, so its
    ``finally`` cannot be relied on to free the rows."""

    def __init__(self, content: AsyncIterator[str], *, release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _pump(side: str, ticket: Ticket, queue: asyncio.Queue[tuple[str, Any]]) -> None:
    """Move one ticket's deltas, then its completion or error, onto the shared queue. Each
    delta yields to the other pump: a ticket hands over its backlog without suspending, so
    a pump behind by several steps would otherwise send one side's backlog all at once."""
    try:
        async for piece in ticket:
            queue.put_nowait((side, piece))
            await asyncio.sleep(0)
        queue.put_nowait((side, ticket.completion))
    except Exception as exc:
        queue.put_nowait((side, exc))


def _error_event(side: str, exc: Exception) -> dict[str, Any]:
    """The chat stream's error shape, plus the side; other errors are logged, not quoted
    (their text may hold other users' data), like the app's catch-all 500."""
    if isinstance(exc, ApiError):
        body = error_body(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code)
    else:
        log.error("compare stream failed on the %s row", side, exc_info=exc)
        body = error_body(500, f"internal error ({type(exc).__name__}); see the server log", type="server_error")
    return {"type": "error", "side": side, **body}


def _done_event(side: str, done: Completion, prepared: Prepared) -> dict[str, Any]:
    usage = prepared.token_usage(done.completion_tokens)
    event = {"type": "done", "side": side, "text": done.text, "finish_reason": done.finish_reason, "usage": usage}
    if prepared.usage is not None:  # validated like the JSON response's record
        event["tailorlm"] = s.TailorlmUsage(**prepared.usage).model_dump(mode="json")
    return event


async def _events(
    svc: Service, user_id: str, message: str, prepared: tuple[Prepared, Prepared], tickets: list[Ticket]
) -> AsyncIterator[str]:
    """Both rows' events as they arrive. An async generator (Starlette would run a sync one in
    the thread pool, a thread hop per event); a disconnect cancels it, and :class:`_RowsStream`
    then cancels the rows."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    pumps = [asyncio.ensure_future(_pump(side, t, queue)) for side, t in zip(SIDES, tickets, strict=True)]
    texts: dict[str, str] = {}
    try:
        while len(texts) < len(SIDES):
            side, item = await queue.get()
            if isinstance(item, str):
                yield _sse({"type": "delta", "side": side, "delta": item})
            elif isinstance(item, Completion):
                texts[side] = item.text
                yield _sse(_done_event(side, item, prepared[SIDES.index(side)]))
            else:
                yield _sse(_error_event(side, item))
                break
        if len(texts) == len(SIDES):  # only a finished compare is a conversation turn
            turn = [{"role": "user", "content": message}, {"role": "assistant", "content": texts["personalized"]}]
            svc.remember(user_id, turn)
        yield "data: [DONE]\n\n"
    finally:
        for pump in pumps:
            pump.cancel()
        _cancel_unfinished(svc.scheduler, tickets)
