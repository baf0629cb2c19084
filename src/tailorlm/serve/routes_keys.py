"""Admin-only key management: create user-scoped keys, list keys, revoke one.

A new key is returned once, in the response to ``POST /v1/keys``; the store keeps only
its salted hash, so a lost key is revoked and replaced, never recovered.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends

import tailorlm.serve.schemas as s
from tailorlm.serve.auth import Principal, require_admin
from tailorlm.serve.errors import ApiError
from tailorlm.serve.service import Service, get_principal, get_service

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": s.ErrorResponse} for code in (400, 401, 403, 404, 422, 429)}
router = APIRouter(prefix="/keys", tags=["keys"], responses=_ERRORS)


@router.post("", response_model=s.KeyCreated, status_code=201)
def create_key(
    body: s.KeyCreate, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> s.KeyCreated:
    """A key that can read and write only ``user_id``'s data; the user must exist (404 otherwise:
    a key for a mistyped id would silently read nothing and write a new user)."""
    require_admin(principal)
    if not svc.store.has_user(user_id=body.user_id):
        raise ApiError(404, f"unknown user {body.user_id!r}; create it with POST /v1/users first", param="user_id")
    key = svc.keys.create(role="user", user_id=body.user_id, label=body.label)
    key_id = key.split("_", 2)[1]  # tlm_<key_id>_<secret>
    return s.KeyCreated(key=key, key_id=key_id, role="user", user_id=body.user_id)


@router.get("", response_model=s.KeyList)
def list_keys(
    user_id: str | None = None, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> s.KeyList:
    """Every key's id, role, user and dates; never a secret or a hash."""
    require_admin(principal)
    return s.KeyList(data=[s.KeyOut(**asdict(k)) for k in svc.keys.list_keys(user_id=user_id)])


@router.delete(
    "/{key_id}",
    response_model=s.KeyOut,
    responses={409: {"model": s.ErrorResponse, "description": "the key making the request cannot revoke itself"}},
)
def revoke_key(
    key_id: str, principal: Principal = Depends(get_principal), svc: Service = Depends(get_service)
) -> s.KeyOut:
    """Revoke a key at once (this process) and within a minute on other replicas."""
    require_admin(principal)
    if key_id == principal.key_id:
        raise ApiError(409, "refusing to revoke the key making this request; use another admin key")
    if not svc.keys.revoke(key_id):
        raise ApiError(404, f"no active key {key_id!r}", param="key_id")
    info = next(k for k in svc.keys.list_keys() if k.key_id == key_id)
    return s.KeyOut(**asdict(info))
