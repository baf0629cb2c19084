"""Per-user data versions (kept by triggers) and the history cache that trusts them.

Run on SQLite and on a real PostgreSQL server (the ``store`` fixture). A second ``Store``
on the same database stands for another process: its writes never pass through the first
store's Python code, so only the database's triggers can tell the first store's cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from tailorlm.data import Document, Fact, Interaction, Item, Store, User
from tailorlm.data._migrations import SCHEMA_VERSION, migrate
from tailorlm.retrieval import load_history


def _doc(user: str, doc_id: str, text_: str, ts: int) -> Document:
    return Document(user_id=user, doc_id=doc_id, doc_kind="review", text=text_, timestamp=ts)


@pytest.fixture
def other(store: Store, tmp_path: Path) -> Store:
    """A second store on the same database: another process's writes."""
    s = Store(store.engine.url.render_as_string(hide_password=False), files_dir=tmp_path / "other")
    yield s
    s.close()


def _texts(store: Store, user: str, **kw) -> list[str]:
    return [e.text for e in load_history(store, user_id=user, **kw)]


def test_every_write_of_a_users_rows_changes_their_version_and_no_one_elses(store: Store, other: Store) -> None:
    store.add([_doc("u1", "d1", "first", 1), _doc("u2", "e1", "theirs", 1)])
    seen = [store.data_version(user_id="u1")]
    u2 = store.data_version(user_id="u2")
    assert seen[0].cacheable and u2.cacheable
    other.add([_doc("u1", "d2", "second", 2)])  # insert
    seen.append(store.data_version(user_id="u1"))
    other.add([_doc("u1", "d2", "second, edited", 2)])  # upsert of the same row: an update
    seen.append(store.data_version(user_id="u1"))
    other.add([Interaction(user_id="u1", item_id="i1", interaction="rating", value=4, timestamp=3)])
    seen.append(store.data_version(user_id="u1"))
    other.add_fact(Fact(user_id="u1", fact_id="f1", text="lives in Paris", valid_from=4))
    seen.append(store.data_version(user_id="u1"))
    other.invalidate_fact(user_id="u1", fact_id="f1", at=5)
    seen.append(store.data_version(user_id="u1"))
    with other.engine.begin() as conn:  # a raw statement, bypassing every tailorlm code path
        conn.execute(text("DELETE FROM documents WHERE user_id = 'u1' AND doc_id = 'd1'"))
    seen.append(store.data_version(user_id="u1"))
    users = [v.user for v in seen]
    assert users == sorted(users) and len(set(users)) == len(users), users
    assert store.data_version(user_id="u2").user == u2.user  # others' writes leave u2's version alone


def test_the_cache_answers_repeats_and_sees_another_processs_writes(store: Store, other: Store) -> None:
    store.add([_doc("u1", "d1", "first", 1)])
    assert _texts(store, "u1") == ["first"]
    hits = store.user_cache.hits
    assert _texts(store, "u1") == ["first"]
    assert store.user_cache.hits == hits + 1  # the repeat came from the cache
    other.add([_doc("u1", "d2", "second", 2)])
    assert _texts(store, "u1") == ["first", "second"]
    other.add([_doc("u1", "d1", "first, edited", 1)])
    assert _texts(store, "u1") == ["first, edited", "second"]
    with other.engine.begin() as conn:
        conn.execute(text("DELETE FROM documents WHERE doc_id = 'd2'"))
    assert _texts(store, "u1") == ["first, edited"]


def test_an_item_edit_reaches_cached_interaction_histories(store: Store, other: Store) -> None:
    store.add([Item(item_id="m1", title="Old Title"), Interaction(user_id="u1", item_id="m1", interaction="rating")])
    assert _texts(store, "u1", source="interactions") == ["Old Title"]
    other.add([Item(item_id="m1", title="New Title")])
    assert _texts(store, "u1", source="interactions") == ["New Title"]


def test_a_deleted_user_leaves_no_version_and_a_new_one_never_reuses_an_old_version(store: Store, other: Store) -> None:
    store.add([_doc("u1", "d1", "private", 1)])
    assert _texts(store, "u1") == ["private"]
    old = store.data_version(user_id="u1").user
    other.delete_user(user_id="u1")  # another process: this store's Python cache is not told
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM user_versions WHERE user_id = 'u1'")).scalar() == 0
    assert not store.data_version(user_id="u1").cacheable
    assert _texts(store, "u1") == []  # never the cached "private"
    other.add([_doc("u1", "d1", "new life", 1)])  # the same id and doc id again
    assert store.data_version(user_id="u1").user > old
    assert _texts(store, "u1") == ["new life"]


def test_filters_on_cached_histories_equal_the_stores_own(store: Store) -> None:
    """before (strict, undated excluded), exclude_ids, exclude_items and only_doc_ids applied
    to the cached whole history give what the store's filtered read gives."""
    docs = [_doc("u1", f"d{i}", f"text {i}", i) for i in range(1, 9)]
    docs.append(Document(user_id="u1", doc_id="undated", doc_kind="review", text="no date"))
    docs[2] = docs[2].model_copy(update={"item_id": "shared"})
    store.add([*docs, _doc("u2", "x", "other user", 3)])
    cases = [
        {},
        {"before": 5},
        {"before": 1},
        {"exclude_ids": ["d2", "d7"]},
        {"exclude_items": ["shared"]},
        {"only_doc_ids": ["d1", "d4", "undated"]},
        {"before": 7, "exclude_ids": ["d1"], "exclude_items": ["shared"], "only_doc_ids": ["d1", "d2", "d3", "d5"]},
    ]
    for kw in cases:
        cached = load_history(store, user_id="u1", **kw)
        rows = store.get_document_rows(
            user_id="u1", doc_kind=None, before=kw.get("before"), exclude_ids=kw.get("exclude_ids", ())
        )
        expected = [
            f"doc:{r[0]}"
            for r in rows
            if r[6] not in kw.get("exclude_items", ()) and r[0] in kw.get("only_doc_ids", [r[0]])
        ]
        assert [e.entry_id for e in cached] == expected, kw
        assert all(e.user_id == "u1" for e in cached)


def test_a_store_without_versions_is_migrated_and_its_users_are_cacheable(store: Store) -> None:
    store.add([User(user_id="u1"), _doc("u1", "d1", "old data", 1), Item(item_id="m1", title="t")])
    with store.engine.begin() as conn:
        for table in ("documents", "interactions", "facts", "items"):
            if conn.dialect.name == "postgresql":
                for name in ("insert", "update", "delete", "any"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS tailorlm_version_{name} ON {table}"))
                continue
            for op in ("insert", "update", "delete"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS tailorlm_version_{table}_{op}"))
        conn.execute(text("DROP TABLE user_versions"))
        conn.execute(text("UPDATE tailorlm_meta SET value='3' WHERE key='schema_version'"))
    assert migrate(store.engine) == SCHEMA_VERSION >= 4
    assert "user_versions" in inspect(store.engine).get_table_names()
    before = store.data_version(user_id="u1")
    assert before.cacheable and before.catalogue  # initialized from the rows already there
    store.add([_doc("u1", "d2", "new", 2)])  # the triggers are back
    assert store.data_version(user_id="u1").user > before.user


def _pg_triggers(store: Store) -> set[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT event_object_table, trigger_name, action_orientation FROM information_schema.triggers "
                "WHERE trigger_name LIKE 'tailorlm_version%'"
            )
        )
        return {tuple(r) for r in rows}


def test_a_v4_postgresql_store_swaps_its_row_triggers_for_statement_triggers(pg_url: str, tmp_path: Path) -> None:
    """v4 bumped a user's version once per row; v5 once per statement (the store's own load path)."""
    store = Store(pg_url, files_dir=tmp_path / "f")
    try:
        with store.engine.begin() as conn:  # put the store back to v4: its row triggers, as v4 made them
            for table in ("documents", "interactions", "facts", "items"):
                for op in ("insert", "update", "delete", "any"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS tailorlm_version_{op} ON {table}"))
                conn.execute(
                    text(
                        f"CREATE FUNCTION v4_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
                    )
                )
                conn.execute(
                    text(
                        f"CREATE TRIGGER tailorlm_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
                        f"FOR EACH ROW EXECUTE FUNCTION v4_{table}()"
                    )
                )
            conn.execute(text("UPDATE tailorlm_meta SET value='4' WHERE key='schema_version'"))
        assert {o for *_, o in _pg_triggers(store)} == {"ROW"}
        assert migrate(store.engine) == SCHEMA_VERSION >= 5
        triggers = _pg_triggers(store)
        assert {o for *_, o in triggers} == {"STATEMENT"}
        assert {(tb, n) for tb, n, _ in triggers} >= {("documents", "tailorlm_version_insert"),
                                                     ("facts", "tailorlm_version_delete"),
                                                     ("items", "tailorlm_version_any")}  # fmt: skip
        before = store.data_version(user_id="u1")
        store.add([_doc("u1", "d1", "after the migration", 1)])
        assert store.data_version(user_id="u1").user > before.user
    finally:
        store.close()


def test_one_statement_for_many_users_bumps_each_changed_user_once(pg_url: str, tmp_path: Path) -> None:
    """A multi-row statement (a bulk load, a user id moved by UPDATE) bumps every user it touched,
    in one upsert per statement, and no one else."""
    store = Store(pg_url, files_dir=tmp_path / "f")
    try:
        store.add([_doc(u, f"{u}-0", "seed", 1) for u in ("a", "b", "c", "z")])
        v0 = {u: store.data_version(user_id=u).user for u in ("a", "b", "c", "z")}
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE documents SET user_id = 'c' WHERE user_id = 'a'"))  # a loses, c gains
            moved = {u: conn.execute(text(f"SELECT version FROM user_versions WHERE user_id = '{u}'")).scalar()
                     for u in ("a", "b", "c", "z")}  # fmt: skip
            bulk = "SELECT 'b', 'b-' || g, 'review', 'bulk', g, '{}' FROM generate_series(1, 500) g"
            conn.execute(text(f"INSERT INTO documents (user_id, doc_id, doc_kind, text, timestamp, metadata) {bulk}"))
        v1 = {u: store.data_version(user_id=u).user for u in ("a", "b", "c", "z")}
        assert moved["a"] > v0["a"] and moved["c"] > v0["c"] and moved["b"] == v0["b"] and moved["z"] == v0["z"]
        assert v1["b"] > v0["b"] and v1["z"] == v0["z"]
        assert len(load_history(store, user_id="b")) == 501
    finally:
        store.close()


def test_history_cache_off_reads_the_store_every_time(store_url: str, tmp_path: Path) -> None:
    s = Store(store_url, files_dir=tmp_path / "f", history_cache_entries=0)
    try:
        s.add([_doc("u1", "d1", "a", 1)])
        assert _texts(s, "u1") == _texts(s, "u1") == ["a"]
        assert s.user_cache.hits == 0 and s.user_cache.held == 0
    finally:
        s.close()


def test_user_cache_keeps_one_version_per_key_within_its_bound() -> None:
    from tailorlm.data._user_cache import UserCache
    from tailorlm.data._versions import DataVersion

    cache = UserCache(max_entries=5)
    v1, v2, none = DataVersion(10, 1), DataVersion(11, 1), DataVersion(0, 1)
    loads: list[str] = []

    def load(value: str):
        return lambda: loads.append(value) or tuple(value)

    assert cache.get("u1", "docs", v1, load("abc")) == ("a", "b", "c")
    assert cache.get("u1", "docs", v1, load("xyz")) == ("a", "b", "c")  # a hit: not loaded again
    assert cache.get("u2", "docs", v1, load("de")) == ("d", "e")  # another user: its own key
    assert cache.get("u1", "docs", v2, load("abcd")) == tuple("abcd")  # a new version replaces the old
    assert loads == ["abc", "de", "abcd"] and cache.held <= 5
    assert cache.get("u2", "docs", v1, load("zz")) == tuple("zz")  # evicted (LRU) to keep the bound
    assert cache.get("u3", "docs", v1, load("abcdefg")) == tuple("abcdefg")  # larger than the bound:
    assert cache.get("u3", "docs", v1, load("abcdefg")) and loads[-2:] == ["abcdefg"] * 2  # not kept
    assert cache.get("u4", "docs", none, load("q")) and cache.get("u4", "docs", none, load("q"))
    assert loads[-2:] == ["q", "q"]  # version 0 (no row: no data, or deleted) is never cached
    cache.forget("u2")
    cache.get("u2", "docs", v1, load("de"))
    assert loads[-1] == "de"
    with pytest.raises(ValueError, match="max_entries"):
        UserCache(max_entries=-1)
