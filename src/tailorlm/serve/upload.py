"""JSONL upload for one user: every line validated first, then all stored in one transaction.

Each line is a JSON object with ``kind`` (``document`` by default, ``interaction``,
``preference`` or ``user``) and the fields of that record (see
:mod:`tailorlm.data.records`). ``user_id`` may be left out: it is the user in the path,
and a line naming another user is an error, so an upload cannot write elsewhere.
Errors name the line and the field; any error stores nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pydantic import ValidationError

from tailorlm.data import Document, Interaction, Preference, Record, User
from tailorlm.serve.errors import ApiError, format_loc

__all__ = ["UPLOAD_KINDS", "parse_upload"]

UPLOAD_KINDS: dict[str, type] = {
    "document": Document,
    "interaction": Interaction,
    "preference": Preference,
    "user": User,
}
_ID_FIELDS = ("item_id", "doc_id", "interaction_id", "pref_id")
MAX_ERRORS = 20


def parse_upload(body: bytes, user_id: str) -> tuple[list[Record], Counter[str]]:
    """The records of a JSONL body, or ApiError(422) listing up to 20 errors as ``line N, field F: ...``."""
    records: list[Record] = []
    kinds: Counter[str] = Counter()
    errors: list[dict[str, Any]] = []

    def fail(line: int, field: str | None, message: str) -> None:
        errors.append({"line": line, "field": field, "message": message})

    for n, raw in enumerate(body.split(b"\n"), 1):
        if len(errors) >= MAX_ERRORS:
            break
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            fail(n, None, f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(n, None, f"not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(obj, dict):
            fail(n, None, f"must be a JSON object, got {type(obj).__name__}")
            continue
        kind = obj.pop("kind", "document")
        if kind not in UPLOAD_KINDS:
            fail(n, "kind", f"must be one of {', '.join(UPLOAD_KINDS)}, got {kind!r}")
            continue
        given = obj.get("user_id", user_id)
        if given != user_id:
            fail(n, "user_id", f"is {given!r}, but this upload is for user {user_id!r}")
            continue
        obj["user_id"] = user_id
        for f in _ID_FIELDS:  # numeric ids are common in JSON
            if isinstance(obj.get(f), int) and not isinstance(obj[f], bool):
                obj[f] = str(obj[f])
        try:
            records.append(UPLOAD_KINDS[kind].model_validate(obj))
            kinds[kind] += 1
        except ValidationError as exc:
            for err in exc.errors()[:3]:
                fail(n, format_loc(err["loc"]) or None, err["msg"])
    if errors:
        first = errors[0]
        where = f"line {first['line']}" + (f", field '{first['field']}'" if first["field"] else "")
        more = f" ({len(errors) - 1} more error(s) listed in 'errors')" if len(errors) > 1 else ""
        raise ApiError(
            422,
            f"upload rejected, nothing was stored: {where}: {first['message']}{more}",
            param=f"body:line {first['line']}",
            extra={"errors": errors},
        )
    if not records:
        raise ApiError(422, "upload rejected: the body has no records (one JSON object per line)", param="body")
    return records, kinds
