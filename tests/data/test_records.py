"""The record types: validation names the field at fault, content ids, the one list of user attributes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

import tailorlm.data
import tailorlm.data._tables as t
from tailorlm.data import USER_ATTRIBUTES, Artifact, Document, Interaction, Preference, User


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: Document(user_id="", text="x"), "user_id"),
        (lambda: Document(user_id="u", text="x", timestamp="yesterday"), "timestamp"),
        (lambda: Document(user_id="u", text="x", doc_kind=" "), "doc_kind"),
        (lambda: User(user_id="u", age=-1), "age"),
        (lambda: Interaction(user_id="u", item_id="i", interaction="hover"), "interaction"),
        (lambda: Preference(user_id="u", prompt="p", chosen="same", rejected="same"), "identical"),
        (lambda: Document(user_id="u", text="x", unknown=1), "unknown"),
        (lambda: Artifact(scope="user", kind="profile"), "owner"),
    ],
    ids=[
        "empty-user",
        "bad-timestamp",
        "blank-kind",
        "negative-age",
        "unknown-interaction",
        "chosen-equals-rejected",
        "extra-field",
        "user-artifact-without-owner",
    ],
)
def test_bad_records_name_the_field(factory, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        factory()


def test_content_ids_make_reloads_idempotent() -> None:
    """Two identical lines without ids map to one row; a changed text is a new document."""
    a = Document(user_id="u", text="same", timestamp=1)
    assert a.doc_id == Document(user_id="u", text="same", timestamp=1).doc_id
    assert a.doc_id != Document(user_id="u", text="other", timestamp=1).doc_id


def test_user_attributes_agree_with_user_and_users_table() -> None:
    """USER_ATTRIBUTES, User's typed fields and the users table's columns name the same attributes."""
    untyped = ("user_id", "name", "attributes")
    fields = [f for f in User.model_fields if f not in ("kind", *untyped)]
    assert tuple(fields) == USER_ATTRIBUTES
    columns = {c.name: str(c.type) for c in t.users.columns if c.name not in untyped}
    assert tuple(columns) == USER_ATTRIBUTES
    assert columns == {  # the column types are part of the on-disk schema
        "age": "INTEGER",
        "age_band": "VARCHAR(64)",
        "gender": "VARCHAR(64)",
        "occupation": "TEXT",
        "location": "TEXT",
    }
    assert "USER_ATTRIBUTES" in tailorlm.data.__all__ and tailorlm.data.USER_ATTRIBUTES is USER_ATTRIBUTES


def test_users_table_refuses_to_drift_from_user_attributes() -> None:
    """A name added to USER_ATTRIBUTES without a column type fails at import, not at the first insert."""
    code = (
        "import importlib, tailorlm.data.records as r, tailorlm.data._tables as t\n"
        "r.USER_ATTRIBUTES = (*r.USER_ATTRIBUTES, 'shoe_size')\n"
        "try:\n"
        "    importlib.reload(t)\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "shoe_size" in out and "USER_ATTRIBUTES" in out
