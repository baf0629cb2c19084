"""Schema versions: a new store is stamped, pending steps run in order, a newer store is refused.

Run on SQLite and on a real PostgreSQL server (the ``store`` fixture, see conftest.store_url).
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

import tailorlm.errors
from tailorlm.data import Store, User
from tailorlm.data._migrations import SCHEMA_VERSION, Migration, SchemaVersionError, migrate


def test_schema_version_is_stamped(store: Store) -> None:
    with store.engine.connect() as conn:
        stamped = conn.execute(text("SELECT value FROM tailorlm_meta WHERE key='schema_version'")).scalar()
    assert stamped == str(SCHEMA_VERSION)
    assert store.schema_version == SCHEMA_VERSION


def test_migration_runs_pending_steps_in_order(store: Store) -> None:
    def add_mood(ops, conn) -> None:
        ops.add_column("users", __import__("sqlalchemy").Column("mood", __import__("sqlalchemy").Text))

    nxt = SCHEMA_VERSION + 1
    store.add([User(user_id="u1", age=3)])
    v = migrate(store.engine, migrations=[Migration(nxt, "users.mood", add_mood)])
    assert v == nxt
    assert "mood" in {c["name"] for c in inspect(store.engine).get_columns("users")}
    assert store.get_user(user_id="u1").age == 3  # data survived
    assert migrate(store.engine, migrations=[Migration(nxt, "users.mood", add_mood)]) == nxt  # no re-run
    with pytest.raises(SchemaVersionError, match="newer than this tailorlm"):
        migrate(store.engine)  # code knows only up to SCHEMA_VERSION


def test_schema_version_error_is_the_package_one() -> None:
    """One definition (tailorlm.errors), still importable from _migrations; a RuntimeError as before."""
    assert SchemaVersionError is tailorlm.errors.SchemaVersionError
    assert issubclass(SchemaVersionError, tailorlm.errors.TailorlmError)
    assert issubclass(SchemaVersionError, RuntimeError)


def test_version_2_store_gains_the_provenance_table(store: Store) -> None:
    """A store written before provenance (v2: no artifact_users) is upgraded in place; its
    artifacts keep working and have unknown provenance."""
    from tailorlm.data import Artifact, ArtifactRef

    store.put_artifact(Artifact(scope="global", kind="adapter", key="old", payload={"name": "old"}))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE artifact_users"))
        conn.execute(text("UPDATE tailorlm_meta SET value='2' WHERE key='schema_version'"))
    assert migrate(store.engine) == SCHEMA_VERSION >= 3
    assert "artifact_users" in inspect(store.engine).get_table_names()
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("artifact_users")}
    assert {"ix_artifact_users_subject", "ix_artifact_users_deleted"} <= indexes
    assert not store.provenance(ArtifactRef("global", "", "adapter", "old")).known
    store.add([User(user_id="u1")])
    assert store.delete_user(user_id="u1").stale == []
