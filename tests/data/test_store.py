"""The store contract, run on SQLite and on a real PostgreSQL server (see conftest.store_url).

Record validation is in ``test_records``, schema versions in ``test_migrations``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailorlm.data import (
    Artifact,
    Document,
    Fact,
    Interaction,
    Item,
    Preference,
    Store,
    TaskExample,
    User,
)


def _user_data(uid: str, n_docs: int = 3) -> list:
    recs: list = [User(user_id=uid, age=30, occupation="musician", attributes={"plan": "pro"})]
    for i in range(n_docs):
        recs.append(
            Document(
                user_id=uid,
                doc_kind="review",
                text=f"{uid} review {i} about strings",
                title=f"title {i}",
                rating=float(1 + i % 5),
                item_id=f"item{i}",
                timestamp=1000 + i,
            )
        )
        recs.append(Interaction(user_id=uid, item_id=f"item{i}", value=float(1 + i % 5), timestamp=1000 + i))
    recs.append(Preference(user_id=uid, prompt="Title?", chosen=f"{uid} short", rejected="long title"))
    recs.append(TaskExample(task="t", example_id=f"{uid}-q", user_id=uid, input="review", target="5"))
    return recs


def _populate(store: Store, uid: str, files_dir: Path) -> None:
    store.add(_user_data(uid))
    docs = store.get_documents(user_id=uid)
    vecs = np.random.default_rng(abs(hash(uid)) % 2**32).random((len(docs), 8), dtype=np.float32)
    store.put_embeddings(
        user_id=uid,
        model="emb-a",
        version="1",
        doc_ids=[d.doc_id for d in docs],
        vectors=vecs,
        texts=[d.text for d in docs],
    )
    adapter = files_dir / "adapters" / uid
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights of " + uid.encode())
    store.put_artifact(
        Artifact(
            scope="user",
            owner=uid,
            kind="adapter",
            key="rating",
            path=str(adapter),
            model="smollm2",
            model_version="abc",
        )
    )
    store.put_artifact(
        Artifact(
            scope="user",
            owner=uid,
            kind="profile",
            payload={"summary": f"{uid} likes strings"},
            model="smollm2",
            model_version="abc",
        )
    )
    store.add_fact(Fact(user_id=uid, fact_id="f1", text=f"{uid} plays guitar", source="chat"))


def test_roundtrip_each_record_type(store: Store) -> None:
    store.add(
        [
            *_user_data("u1"),
            Item(item_id="item0", title="Strings", attributes={"brand": "D'Addario"}),
        ]
    )
    user = store.get_user(user_id="u1")
    assert user is not None and user.age == 30 and user.attributes == {"plan": "pro"}
    docs = store.get_documents(user_id="u1")
    assert [d.text for d in docs] == [
        "u1 review 0 about strings",
        "u1 review 1 about strings",
        "u1 review 2 about strings",
    ]
    assert docs[1].rating == 2.0 and docs[1].title == "title 1" and docs[1].timestamp == 1001
    assert [i.value for i in store.get_interactions(user_id="u1")] == [1.0, 2.0, 3.0]
    (pref,) = store.get_preferences(user_id="u1")
    assert pref.chosen == "u1 short" and pref.rejected == "long title"
    (ex,) = store.get_examples(task="t", user_id="u1")
    assert ex.target == "5"
    items = store.get_items(["item0", "item1"])
    assert items["item0"].title == "Strings" and items["item1"].title is None  # item1 is a stub


def test_loading_twice_changes_nothing(store: Store) -> None:
    first = store.add(_user_data("u1"))
    assert first.added["documents"] == 3 and first.added["users"] == 1
    export = store.export_user(user_id="u1")
    counts = store.counts()
    again = store.add(_user_data("u1"))
    assert all(v == 0 for v in again.added.values())
    assert store.counts() == counts
    assert store.export_user(user_id="u1") == export


def test_failed_transaction_commits_nothing(store: Store) -> None:
    store.add(_user_data("keep"))
    before = store.counts()
    with pytest.raises(RuntimeError, match="boom"), store.writer(batch_size=2) as w:
        w.add_all(_user_data("new", n_docs=10))  # several batches are flushed inside the transaction
        raise RuntimeError("boom")
    assert store.counts() == before
    assert store.get_user(user_id="new") is None


def test_stub_user_never_overwrites_known_attributes(store: Store) -> None:
    store.add([User(user_id="u1", gender="F", age=41)])
    store.add([Document(user_id="u1", text="later review")])  # creates a stub only if missing
    user = store.get_user(user_id="u1")
    assert user is not None and user.gender == "F" and user.age == 41


def test_upsert_updates_changed_fields(store: Store) -> None:
    store.add([Document(user_id="u1", doc_id="d1", text="first draft")])
    store.add([Document(user_id="u1", doc_id="d1", text="final text")])
    assert [d.text for d in store.get_documents(user_id="u1")] == ["final text"]


def test_documents_before_is_strict_and_exclude_works(store: Store) -> None:
    store.add(_user_data("u1", n_docs=4))
    docs = store.get_documents(user_id="u1", before=1002)
    assert [d.timestamp for d in docs] == [1000, 1001]
    first = docs[0].doc_id
    assert [d.timestamp for d in store.get_documents(user_id="u1", before=1002, exclude_ids=[first])] == [1001]


def test_the_latest_documents_are_read_newest_first_without_the_rest(store: Store) -> None:
    store.add(_user_data("u1", n_docs=6))
    store.add([Document(doc_id="undated", user_id="u1", text="no date", timestamp=None)])
    latest = store.get_documents(user_id="u1", limit=3, newest_first=True)
    assert [d.timestamp for d in latest] == [1005, 1004, 1003]
    everything = store.get_documents(user_id="u1", newest_first=True)
    assert [d.doc_id for d in everything][-1] == "undated" and len(everything) == 7  # undated last either way
    assert [d.timestamp for d in store.get_documents(user_id="u1", limit=2)] == [1000, 1001]


def test_embeddings_keep_models_apart(store: Store) -> None:
    store.add(_user_data("u1"))
    ids = [d.doc_id for d in store.get_documents(user_id="u1")]
    a = np.eye(3, 4, dtype=np.float32)
    store.put_embeddings(user_id="u1", model="emb-a", version="1", doc_ids=ids, vectors=a)
    store.put_embeddings(user_id="u1", model="emb-b", version="2", doc_ids=ids[:1], vectors=np.ones((1, 6)))
    got_ids, mat, _ = store.get_embeddings(user_id="u1", model="emb-a")
    order = [ids.index(i) for i in got_ids]
    np.testing.assert_array_equal(mat, a[order])
    assert store.get_embeddings(user_id="u1", model="emb-b")[1].shape == (1, 6)
    with pytest.raises(ValueError, match="dimension 4 in this store, got 6"):
        store.put_embeddings(user_id="u1", model="emb-a", version="1", doc_ids=ids[:1], vectors=np.ones((1, 6)))
    with pytest.raises(ValueError, match="vectors must be"):
        store.put_embeddings(user_id="u1", model="emb-a", version="1", doc_ids=ids, vectors=np.ones((2, 4)))
    assert store.get_embeddings(user_id="other", model="emb-a")[1].shape == (0, 4)


def test_facts_are_closed_not_overwritten(store: Store) -> None:
    store.add_fact(Fact(user_id="u1", fact_id="city", text="lives in Paris", valid_from=10))
    store.add_fact(Fact(user_id="u1", fact_id="city2", text="lives in Lyon", valid_from=20))
    assert store.invalidate_fact(user_id="u1", fact_id="city", at=20)
    assert [f.text for f in store.get_facts(user_id="u1")] == ["lives in Lyon"]
    history = store.get_facts(user_id="u1", valid_only=False)
    assert [(f.text, f.valid_to) for f in history] == [
        ("lives in Paris", 20),
        ("lives in Lyon", None),
    ]
    assert not store.invalidate_fact(user_id="other", fact_id="city2")  # another user's fact id
    vec = np.ones((2, 3))
    store.put_embeddings(user_id="u1", model="m", version="1", doc_ids=["fact:city2", "fact:city"], vectors=vec)
    assert store.delete_fact(user_id="u1", fact_id="city2")
    assert store.get_facts(user_id="u1") == []
    assert store.get_embeddings(user_id="u1", model="m")[0] == ["fact:city"]  # the forgotten fact's vector is gone


def test_delete_user_removes_everything_of_that_user_only(store: Store, tmp_path: Path) -> None:
    files = tmp_path / "files"
    for uid in ("alice", "bob", "carol"):
        _populate(store, uid, files)
    store.put_artifact(Artifact(scope="persona", owner="p0", kind="description", payload={"text": "guitarists"}))
    store.put_artifact(Artifact(scope="global", kind="adapter", key="rating"))
    others = {u: store.export_user(user_id=u) for u in ("bob", "carol")}
    assert others["bob"]["embeddings"] and others["bob"]["artifacts"] and others["bob"]["facts"]

    report = store.delete_user(user_id="alice")

    assert report.rows["documents"] == 3 and report.rows["embeddings"] == 3 and report.rows["artifacts"] == 2
    assert report.files == [str((files / "adapters" / "alice").resolve())]
    assert not (files / "adapters" / "alice").exists()
    assert (files / "adapters" / "bob" / "adapter_model.safetensors").exists()
    assert all(v == 0 for v in store.user_counts(user_id="alice").values())
    assert store.get_user(user_id="alice") is None
    with pytest.raises(KeyError, match="alice"):
        store.export_user(user_id="alice")
    assert {u: store.export_user(user_id=u) for u in ("bob", "carol")} == others
    assert len(store.list_artifacts(scope="persona")) == 1 and len(store.list_artifacts(scope="global")) == 1


def test_export_is_json_and_complete(store: Store, tmp_path: Path) -> None:
    import json

    _populate(store, "alice", tmp_path / "files")
    export = json.loads(json.dumps(store.export_user(user_id="alice")))
    assert set(export) == {
        "user",
        "documents",
        "interactions",
        "preferences",
        "examples",
        "embeddings",
        "facts",
        "artifacts",
    }
    assert len(export["embeddings"][0]["vector"]) == 8
    assert export["embeddings"][0]["model"] == "emb-a"
    assert {a["kind"] for a in export["artifacts"]} == {"adapter", "profile"}
    assert export["artifacts"][0]["model"] == "smollm2"  # provenance travels with the artifact


def test_artifact_files_outside_files_dir_are_never_deleted(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("do not delete")
    store.put_artifact(Artifact(owner="u1", kind="adapter", path=str(outside)))
    assert store.delete_user(user_id="u1").files == []
    assert outside.exists()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="only sqlite and postgresql"):
        Store("mysql://x@localhost/db")


def test_lean_document_rows_match_records(store: Store) -> None:
    store.add(_user_data("u1", n_docs=4))
    kw = {"user_id": "u1", "before": 1003, "exclude_ids": [store.get_documents(user_id="u1")[0].doc_id]}
    docs = store.get_documents(**kw)
    rows = store.get_document_rows(**kw)
    assert rows == [(d.doc_id, d.text, d.doc_kind, d.timestamp, d.rating, d.title, d.item_id, None) for d in docs]
    assert len(rows) == 2
