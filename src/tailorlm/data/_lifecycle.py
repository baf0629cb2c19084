"""Everything of one user at once: the rows a deletion removes, the data an export returns.

A user's data is their row in ``users``, their rows in every table of
``_tables.USER_TABLES``, and the artifacts of scope ``user`` they own, whose files
are removed too, but only inside the store's ``files_dir``. Derived rows of *other*
users that quote this user's text go too: a derived preference pair may take its rejected
answer from another user's review title (``derived:other-user-title``), which would
otherwise outlive its author in someone else's rows (and API reads). A derivation can
rebuild such pairs from the users that remain.

What this module leaves out: the transaction boundaries and the order of rows
versus files (``Store.delete_user`` and ``Store.export_user`` in ``store``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, or_, select

import tailorlm.data._tables as t

__all__ = ["delete_user_rows", "export_user_rows", "remove_file"]


def delete_user_rows(conn: Connection, user_id: str) -> tuple[dict[str, int], list[str]]:
    """Delete every row of ``user_id``: (rows deleted per table, file paths of their artifacts)."""
    rows: dict[str, int] = {}
    c = t.artifacts.c
    owned = (c.scope == "user") & (c.owner == user_id)
    paths = [p for p in conn.execute(select(c.path).where(owned)).scalars() if p]
    rows["artifacts"] = conn.execute(t.artifacts.delete().where(owned)).rowcount
    rows["derived_preferences_of_others"] = _delete_quoting_derivations(conn, user_id)
    for tb in t.USER_TABLES:
        rows[tb.name] = conn.execute(tb.delete().where(tb.c.user_id == user_id)).rowcount
    rows["users"] = conn.execute(t.users.delete().where(t.users.c.user_id == user_id)).rowcount
    return rows, paths


def _delete_quoting_derivations(conn: Connection, user_id: str) -> int:
    """Delete other users' derived preferences whose chosen or rejected text is one of
    ``user_id``'s document titles; how many."""
    d, p = t.documents.c, t.preferences.c
    titles = sorted(
        {x for x in conn.execute(select(d.title).where(d.user_id == user_id, d.title.is_not(None))).scalars() if x}
    )
    derived = or_(p.source == "derived", p.pref_source.like("derived:%"))
    n = 0
    for i in range(0, len(titles), 500):  # bounded IN lists
        chunk = titles[i : i + 500]
        quoting = or_(p.rejected.in_(chunk), p.chosen.in_(chunk))
        n += conn.execute(t.preferences.delete().where(p.user_id != user_id, derived, quoting)).rowcount
    return n


def export_user_rows(conn: Connection, user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``user_id`` in each user table, JSON-ready, in primary-key order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for tb in t.USER_TABLES:
        pk = list(tb.primary_key.columns)
        rows = conn.execute(select(tb).where(tb.c.user_id == user_id).order_by(*pk)).mappings()
        out[tb.name] = [_jsonable(dict(r)) for r in rows]
    return out


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    if "vector" in row and isinstance(row["vector"], bytes | memoryview):
        row["vector"] = np.frombuffer(bytes(row["vector"]), dtype=np.float32).tolist()
    return row


def remove_file(files_dir: Path, path: str | None) -> bool:
    """Delete an artifact file or folder, but only inside ``files_dir``; whether it did."""
    if not path:
        return False
    p = Path(path).resolve()
    if not p.is_relative_to(files_dir) or not p.exists():
        return False
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()
    return True
