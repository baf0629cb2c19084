"""OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Any OpenAI client works unchanged: ``model="tailorlm/rag-bm25+profile"`` and
``user="<user id>"`` personalize the answer from that user's data (the last user
message is the query), the backend model's own name passes through unpersonalized,
and the extension field ``tailorlm`` says what personalization was used.

Every request goes through the service's :class:`~tailorlm.serve.scheduler.Scheduler`: it is
bounded first (``max_tokens`` up to ``serve.max_tokens``, the prompt after personalization
within the model's context; 400 otherwise, before the model is touched), then joins the
running decode batch. Streaming follows OpenAI's server-sent events
(``chat.completion.chunk`` objects, then ``data: [DONE]``) with text as it is decoded; a
client that disconnects, streaming or not, cancels its row.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from tailorlm.models.base import GenerationConfig
from tailorlm.serve.auth import Principal, authorize
from tailorlm.serve.engine import Prepared
from tailorlm.serve.errors import ApiError, error_body
from tailorlm.serve.scheduler import Completion, Ticket, until_disconnect
from tailorlm.serve.schemas import ChatCompletion, ChatCompletionRequest, ErrorResponse, ModelCard, ModelList
from tailorlm.serve.service import Service, get_principal, get_service

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429, 502, 503, 504)
}
_ERRORS[503]["description"] = (
    "the server is shutting down, or (code 'stale_artifact', with serve.refuse_stale_artifacts) the "
    "method would use a shared adapter, projector or persona description that learned from a deleted "
    "user; the message names it and the operator's fix: tailorlm train retrain-stale"
)
router = APIRouter(tags=["openai"], responses=_ERRORS)

PREFIX = "tailorlm/"
DEFAULT_MAX_TOKENS = 256


@router.get("/models", response_model=ModelList)
def list_models(principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)) -> ModelList:
    """tailorlm pipelines (``tailorlm/<method spec>``) and the backend model (pass-through)."""
    return ModelList(data=[ModelCard(id=m) for m in svc.engine.model_ids()])


def _plain_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """OpenAI messages -> the ``{"role", "content"}`` dicts generators take; text parts only."""
    out = []
    for i, m in enumerate(body.messages):
        if m.role == "tool":
            raise ApiError(400, "tool messages are not supported", param=f"messages[{i}].role")
        if isinstance(m.content, list):
            parts = []
            for j, part in enumerate(m.content):
                if part.type != "text" or part.text is None:
                    raise ApiError(
                        400, f"only text content parts are supported, got {part.type!r}",
                        param=f"messages[{i}].content[{j}]",
                    )  # fmt: skip
                parts.append(part.text)
            content = "".join(parts)
        else:
            content = m.content or ""
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content})
    return out


def _config(body: ChatCompletionRequest) -> GenerationConfig:
    stop = body.stop if body.stop is not None else ()
    try:  # OpenAI's defaults where a field is missing
        return GenerationConfig(
            max_new_tokens=body.max_tokens or body.max_completion_tokens or DEFAULT_MAX_TOKENS,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            seed=body.seed,
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    response_model_exclude_unset=True,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    response_headers: Response,
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> Any:
    """Answer a conversation, personalized for ``user`` when ``model`` is ``tailorlm/<spec>``."""
    user_id = body.user if body.user is not None else principal.user_id
    if user_id is not None:
        authorize(principal, user_id)
    if body.model.startswith(PREFIX):
        spec: str | None = body.model[len(PREFIX) :].strip()
        if not spec:
            raise ApiError(404, "model 'tailorlm/' names no method; see GET /v1/models", param="model")
    elif body.model == svc.engine.generator.name:
        spec = None
    else:
        raise ApiError(
            404,
            f"unknown model {body.model!r}: use 'tailorlm/<method spec>' or {svc.engine.generator.name!r} "
            "(GET /v1/models lists them)",
            param="model",
            code="model_not_found",
        )
    messages = _plain_messages(body)
    config = _config(body)
    bound = svc.settings.serve.max_tokens
    if config.max_new_tokens > bound:
        param = "max_tokens" if body.max_tokens is not None else "max_completion_tokens"
        raise ApiError(400, f"{param} is {config.max_new_tokens}; this server allows at most {bound}", param=param)
    began = time.monotonic()
    prepared: Prepared = await svc.generate(svc.engine.prepare, user_id, spec, messages, config)
    personalize_ms = (time.monotonic() - began) * 1000
    ticket = svc.scheduler.submit(prepared.row, config, key=principal.key_id, prompt_tokens=prepared.prompt_tokens)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"

    def finished(done: Completion) -> dict[str, int]:
        if user_id is not None and prepared.known_user:
            svc.remember(user_id, [*messages, {"role": "assistant", "content": done.text}])
        return prepared.token_usage(done.completion_tokens)

    if body.stream:
        try:  # a disconnect while queued cancels the row; from the first token on, _sse does
            await until_disconnect(request, ticket.started(), svc.scheduler, [ticket])
        except BaseException:
            svc.scheduler.cancel(ticket)
            raise
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = _sse(completion_id, body.model, prepared, ticket, svc, finished, include_usage)
        headers = {"Cache-Control": "no-cache", "Server-Timing": _server_timing(personalize_ms, ticket)}
        return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
    done = await until_disconnect(request, ticket.result(), svc.scheduler, [ticket])
    response_headers.headers["Server-Timing"] = _server_timing(personalize_ms, ticket)
    response = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": done.text}, "finish_reason": done.finish_reason}
        ],
        "usage": finished(done),
    }
    if prepared.usage is not None:
        response["tailorlm"] = prepared.usage
    return response


def _server_timing(personalize_ms: float, ticket: Ticket) -> str:
    """Where the time to the first token went (the W3C Server-Timing header): building the
    personalized prompt, then the scheduler's phases (see :meth:`Ticket.timings`)."""
    phases = {"personalize": personalize_ms, **ticket.timings()}
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in phases.items())


async def _sse(
    completion_id: str,
    model: str,
    prepared: Prepared,
    ticket: Ticket,
    svc: Service,
    finished: Any,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The answer as SSE chunks while it is decoded. A disconnect cancels this generator
    (Starlette), and with it the row. An async generator: Starlette would run a sync one in
    the thread pool, one thread hop per chunk."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        data.update(choices=[choice], **extra)
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    try:
        first: dict[str, Any] = {"tailorlm": prepared.usage} if prepared.usage is not None else {}
        yield chunk({"role": "assistant", "content": ""}, **first)
        try:
            async for piece in ticket:
                yield chunk({"content": piece})
        except ApiError as exc:  # e.g. the time limit, after the stream started
            yield f"data: {json.dumps(error_body(exc.status, exc.message, type=exc.type, code=exc.code))}\n\n"
            yield "data: [DONE]\n\n"
            return
        done = ticket.completion
        assert done is not None
        usage = finished(done)
        yield chunk({}, done.finish_reason)
        if include_usage:
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
            yield f"data: {json.dumps({**data, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if not ticket.done:
            svc.scheduler.cancel(ticket)
