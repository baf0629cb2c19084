"""REST routes for user data under ``/v1/users``.

Every route with a ``user_id`` first calls :func:`~tailorlm.serve.auth.authorize`
(403 for another user's key, before anything is looked up), then needs the user to
exist (404), except ``POST /v1/users`` which creates it. Writes go through the store's
one-transaction writer; reads are the store's per-user queries, so a request never
touches another user's rows. Handlers are plain functions: FastAPI runs them in its
thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError

import tailorlm.serve.schemas as s
from tailorlm.data import Document, Interaction, Preference, User
from tailorlm.data.records import TIMESTAMP_MAX, TIMESTAMP_MIN
from tailorlm.serve.auth import Principal, authorize
from tailorlm.serve.errors import ApiError, format_loc
from tailorlm.serve.paths import register_convertors
from tailorlm.serve.service import Service, get_principal, get_service
from tailorlm.serve.upload import parse_upload

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429)
}
_ERRORS[409] = {
    "model": s.ErrorResponse,
    "description": "the body's user_id names another user than the path (a rule JSON Schema cannot state)",
}
register_convertors()  # "{user_id:user_id}": ids with an encoded "/" (serve/paths.py)
router = APIRouter(prefix="/users", tags=["users"], responses=_ERRORS)
R = TypeVar("R", Document, Interaction, Preference)


def _user(svc: Service, principal: Principal, user_id: str) -> None:
    authorize(principal, user_id)
    svc.engine.require_user(user_id)


def _record(cls: type[R], user_id: str, body: BaseModel) -> R:
    data = body.model_dump()
    given = data.pop("user_id", None)
    if given is not None and given != user_id:
        raise ApiError(
            409, f"body.user_id is {given!r} but the path names user {user_id!r}; omit it or make them equal",
            param="body.user_id",
        )  # fmt: skip
    try:
        return cls(user_id=user_id, **data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = format_loc(("body", *err["loc"])) if err["loc"] else "body"
        raise ApiError(422, f"{loc}: {err['msg']}", param=loc) from None


def _write(svc: Service, record: Any, source: str = "api") -> None:
    svc.write([record], source=source)


# Lists of a user's history come a page at a time: PAGE rows unless the client asks for up to MAX_PAGE.
PAGE, MAX_PAGE = 100, 10_000

# -- users ---------------------------------------------------------------------------------------


@router.get("", response_model=s.UserList)
def list_users(
    limit: int = Query(10_000, ge=1, le=100_000),
    offset: int = Query(0, ge=0, le=2**63 - 1),  # the database counts rows in 64 bits
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> s.UserList:
    """User ids, sorted; a user-scoped key sees only its own user."""
    if principal.is_admin:
        ids = svc.store.list_users(limit=limit, offset=offset)
    else:
        own = principal.user_id or ""
        ids = [own] if offset == 0 and svc.store.has_user(user_id=own) else []
    return s.UserList(data=ids, limit=limit, offset=offset)


@router.post("", response_model=User)
def upsert_user(
    body: s.UserIn, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> User:
    """Create a user or replace its attributes (fields not given become empty)."""
    authorize(principal, body.user_id)
    try:
        user = User(**body.model_dump())
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ApiError(422, f"{format_loc(('body', *err['loc']))}: {err['msg']}") from None
    _write(svc, user)
    return user


@router.get("/{user_id:user_id}", response_model=User)
def get_user(user_id: str, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)) -> User:
    authorize(principal, user_id)
    user = svc.store.get_user(user_id=user_id)
    if user is None:
        raise ApiError(404, f"unknown user {user_id!r}; create it with POST /v1/users", param="user_id")
    return user


@router.delete("/{user_id:user_id}", response_model=s.DeletionResult)
def delete_user(
    user_id: str, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> s.DeletionResult:
    """Delete every row, vector, artifact, file and API key of this user, and nothing else.

    ``stale_artifacts`` lists the shared artifacts that learned from the user: they are
    marked stale until an operator runs ``tailorlm train retrain-stale``.
    """
    _user(svc, principal, user_id)
    report, keys = svc.delete_user(user_id)
    stale = [s.StaleArtifactInfo.of(a) for a in report.stale]
    return s.DeletionResult(
        user_id=user_id, rows=report.rows, files=report.files, keys_deleted=keys, stale_artifacts=stale
    )


@router.get("/{user_id:user_id}/export", response_model=dict[str, Any])
def export_user(
    user_id: str, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> dict[str, Any]:
    """Everything stored about this user, as JSON (the GDPR-style export)."""
    authorize(principal, user_id)
    try:
        return svc.store.export_user(user_id=user_id)
    except KeyError:
        raise ApiError(404, f"unknown user {user_id!r}", param="user_id") from None


# -- documents, interactions, preferences ---------------------------------------------------------


@router.get("/{user_id:user_id}/documents", response_model=s.DocumentList)
def list_documents(
    user_id: str,
    doc_kind: str | None = None,
    before: int | None = Query(
        None, ge=TIMESTAMP_MIN, le=TIMESTAMP_MAX, description="only documents strictly before this Unix time"
    ),
    limit: int = Query(PAGE, ge=1, le=MAX_PAGE, description="documents per page"),
    offset: int = Query(0, ge=0, le=2**63 - 1, description="documents to skip (the next page: offset + limit)"),
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> s.DocumentList:
    """The user's documents, oldest first (undated last), a page at a time (``has_more`` says
    whether another follows): a history grows without bound, a response must not."""
    _user(svc, principal, user_id)
    docs = svc.store.get_documents(user_id=user_id, doc_kind=doc_kind, before=before, limit=limit + 1, offset=offset)
    return s.DocumentList(data=docs[:limit], limit=limit, offset=offset, has_more=len(docs) > limit)


@router.post("/{user_id:user_id}/documents", response_model=Document, status_code=201)
def add_document(
    user_id: str, body: s.DocumentIn, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> Document:
    """Store (upsert by ``doc_id``) one document; returns it with its derived ``doc_id``."""
    _user(svc, principal, user_id)
    doc = _record(Document, user_id, body)
    _write(svc, doc)
    return doc


@router.get("/{user_id:user_id}/interactions", response_model=s.InteractionList)
def list_interactions(
    user_id: str,
    interaction: str | None = None,
    before: int | None = Query(
        None, ge=TIMESTAMP_MIN, le=TIMESTAMP_MAX, description="only interactions strictly before this Unix time"
    ),
    limit: int = Query(PAGE, ge=1, le=MAX_PAGE, description="interactions per page"),
    offset: int = Query(0, ge=0, le=2**63 - 1, description="interactions to skip (the next page: offset + limit)"),
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> s.InteractionList:
    """The user's interactions, oldest first (undated last), a page at a time (``has_more``)."""
    _user(svc, principal, user_id)
    rows = svc.store.get_interactions(
        user_id=user_id, interaction=interaction, before=before, limit=limit + 1, offset=offset
    )
    return s.InteractionList(data=rows[:limit], limit=limit, offset=offset, has_more=len(rows) > limit)


@router.post("/{user_id:user_id}/interactions", response_model=Interaction, status_code=201)
def add_interaction(
    user_id: str,
    body: s.InteractionIn,
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> Interaction:
    _user(svc, principal, user_id)
    rec = _record(Interaction, user_id, body)
    _write(svc, rec)
    return rec


@router.get("/{user_id:user_id}/preferences", response_model=s.PreferenceList)
def list_preferences(
    user_id: str,
    dimension: str | None = None,
    limit: int = Query(PAGE, ge=1, le=MAX_PAGE, description="preference pairs per page"),
    offset: int = Query(0, ge=0, le=2**63 - 1, description="pairs to skip (the next page: offset + limit)"),
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> s.PreferenceList:
    """The user's preference pairs by time, a page at a time (``has_more``)."""
    _user(svc, principal, user_id)
    rows = svc.store.get_preferences(user_id=user_id, dimension=dimension, limit=limit + 1, offset=offset)
    return s.PreferenceList(data=rows[:limit], limit=limit, offset=offset, has_more=len(rows) > limit)


@router.post("/{user_id:user_id}/preferences", response_model=Preference, status_code=201)
def add_preference(
    user_id: str,
    body: s.PreferenceIn,
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> Preference:
    """Store pair-wise feedback (e.g. the workbench's "this one is better")."""
    _user(svc, principal, user_id)
    rec = _record(Preference, user_id, body)
    _write(svc, rec)
    return rec


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one JSON object per line, with 'kind'"},
                "example": '{"kind": "document", "doc_kind": "review", "text": "Warm strings.", "rating": 5}\n'
                '{"kind": "interaction", "item_id": "B001", "interaction": "rating", "value": 4}\n',
            }
        },
    }
}


@router.post("/{user_id:user_id}/upload", response_model=s.UploadResult, status_code=201, openapi_extra=_UPLOAD_BODY)
async def upload(
    user_id: str, request: Request, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> s.UploadResult:
    """JSON lines (``kind``: document | interaction | preference | user): all stored, or none.

    Errors name the line and the field. The body size limit applies (serve.max_body_bytes);
    load bigger files with ``tailorlm data load``.
    """
    import anyio.to_thread

    authorize(principal, user_id)
    body = await request.body()

    def work() -> s.UploadResult:
        svc.engine.require_user(user_id)
        records, kinds = parse_upload(body, user_id)
        svc.write(records, source="upload")
        return s.UploadResult(user_id=user_id, records=len(records), by_kind=dict(kinds))

    return await anyio.to_thread.run_sync(work)


# -- memory, workbench views ----------------------------------------------------------------------


@router.get("/{user_id:user_id}/facts", response_model=s.FactList)
def list_facts(
    user_id: str,
    include_invalid: bool = Query(False, description="also facts that were contradicted later"),
    limit: int = Query(PAGE, ge=1, le=MAX_PAGE, description="facts per page"),
    offset: int = Query(0, ge=0, le=2**63 - 1, description="facts to skip (the next page: offset + limit)"),
    principal: Principal = Depends(get_principal),
    svc: Service = Depends(get_service),
) -> s.FactList:
    """Facts remembered from conversations (valid ones unless ``include_invalid``), oldest
    first, a page at a time (``has_more``)."""
    _user(svc, principal, user_id)
    rows = svc.store.get_facts(user_id=user_id, valid_only=not include_invalid, limit=limit + 1, offset=offset)
    return s.FactList(data=rows[:limit], limit=limit, offset=offset, has_more=len(rows) > limit)


@router.delete("/{user_id:user_id}/facts/{fact_id}", response_model=s.ForgetResult)
def forget_fact(
    user_id: str, fact_id: str, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> s.ForgetResult:
    """Forget one fact: it is deleted, and no longer used for this user's answers."""
    _user(svc, principal, user_id)
    n = svc.forget_fact(user_id, fact_id)
    if n == 0:
        raise ApiError(404, f"user {user_id!r} has no fact {fact_id!r}", param="fact_id")
    return s.ForgetResult(user_id=user_id, fact_id=fact_id, forgotten=n)


@router.get("/{user_id:user_id}/overview", response_model=s.Overview)
def overview(
    user_id: str, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> s.Overview:
    """Attributes, counts, recent documents, valid facts and the scope the user is served at."""
    authorize(principal, user_id)
    user = svc.store.get_user(user_id=user_id)
    if user is None:
        raise ApiError(404, f"unknown user {user_id!r}; create it with POST /v1/users", param="user_id")
    # The five latest only: reading a long history here made every overview's work grow with it.
    recent = svc.store.get_documents(user_id=user_id, limit=5, newest_first=True)
    counts = svc.store.user_counts(user_id=user_id)
    scope, persona = svc.engine.scope_of(user_id, counts)
    return s.Overview(
        user=user,
        counts=counts,
        recent_documents=recent,
        facts=svc.store.get_facts(user_id=user_id, limit=PAGE),  # GET ./facts pages through the rest
        scope=scope,
        persona=persona,
        pooled_context=svc.engine.pooled_context,
    )
