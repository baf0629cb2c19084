"""The REST API for user data over real HTTP: users, records, JSONL upload, export, delete,
facts, and the workbench's compare and overview."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from serve_harness import ALICE_DOCS, Live

from tailorlm.data import Fact


def _jsonl(*rows: dict) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def test_create_read_update_and_list_users(live: Live) -> None:
    with live.admin() as c:
        r = c.post("/v1/users", json={"user_id": "carol", "age": 41, "attributes": {"instrument": "cello"}})
        assert r.status_code == 200 and r.json()["attributes"] == {"instrument": "cello"}
        assert c.get("/v1/users/carol").json()["age"] == 41
        c.post("/v1/users", json={"user_id": "carol", "occupation": "luthier"})  # upsert replaces
        carol = c.get("/v1/users/carol").json()
        assert (carol["age"], carol["occupation"]) == (None, "luthier")
        assert {"alice", "bob", "carol"} <= set(c.get("/v1/users").json()["data"])
        assert c.get("/v1/users", params={"limit": 1, "offset": 1}).json()["data"] == ["bob"]
    with live.as_user("bob") as c:
        assert c.get("/v1/users").json()["data"] == ["bob"]  # a user key sees only itself


def test_records_round_trip(live: Live) -> None:
    with live.as_user("alice") as c:
        doc = c.post("/v1/users/alice/documents", json={"text": "Bright steel strings.", "doc_kind": "Review"})
        assert doc.status_code == 201
        assert doc.json()["doc_id"] and doc.json()["doc_kind"] == "review"  # derived id, normalized kind
        assert "Bright steel strings." in [d["text"] for d in c.get("/v1/users/alice/documents").json()["data"]]
        assert c.get("/v1/users/alice/documents", params={"limit": 1}).json()["data"][0]["text"] == ALICE_DOCS[0]
        inter = c.post("/v1/users/alice/interactions", json={"item_id": "capo-3", "interaction": "like"})
        assert inter.status_code == 201
        likes = c.get("/v1/users/alice/interactions", params={"interaction": "like"}).json()["data"]
        assert [i["item_id"] for i in likes] == ["capo-3"]
        pref = {"prompt": "Tone?", "chosen": "Warm", "rejected": "Harsh", "dimension": "tone", "source": "test"}
        assert c.post("/v1/users/alice/preferences", json=pref).status_code == 201
        stored = c.get("/v1/users/alice/preferences", params={"dimension": "tone"}).json()["data"]
        assert [(p["chosen"], p["source"]) for p in stored] == [("Warm", "test")]


def test_history_lists_come_a_page_at_a_time(live: Live) -> None:
    """A history grows without bound; a list response does not: 100 rows unless asked for more
    (at most 10,000), ``has_more`` and ``offset`` to walk the rest, every row exactly once."""
    rows = [{"doc_id": f"page-{i:03d}", "text": f"note {i}", "timestamp": 1_000 + i} for i in range(130)]
    upload = _jsonl(*({"kind": "document", **r} for r in rows))
    with live.admin() as a:
        assert a.post("/v1/users", json={"user_id": "pager"}).status_code == 200
    with live.as_user("pager") as c:
        assert c.post("/v1/users/pager/upload", content=upload).status_code == 201
        first = c.get("/v1/users/pager/documents").json()
        assert (len(first["data"]), first["limit"], first["offset"], first["has_more"]) == (100, 100, 0, True)
        seen, offset, more = [d["doc_id"] for d in first["data"]], 0, True
        while more:
            offset += 50
            page = c.get("/v1/users/pager/documents", params={"limit": 50, "offset": offset}).json()
            seen += [d["doc_id"] for d in page["data"] if d["doc_id"] not in seen]
            more = page["has_more"]
        assert seen == [r["doc_id"] for r in rows]  # oldest first, nothing skipped or repeated
        last = c.get("/v1/users/pager/documents", params={"limit": 30, "offset": 100}).json()
        assert len(last["data"]) == 30 and last["has_more"] is False
        assert c.get("/v1/users/pager/documents", params={"limit": 10_001}).status_code == 422
        assert c.get("/v1/users/pager/interactions").json()["has_more"] is False


def test_preference_and_fact_lists_come_a_page_at_a_time(live: Live) -> None:
    """Preferences and memory facts grow with use too: the same pages as documents."""
    from tailorlm.data import Fact

    prefs = [
        {"kind": "preference", "pref_id": f"p{i:03d}", "prompt": f"q {i}", "chosen": "a", "rejected": "b",
         "timestamp": 1_000 + i}
        for i in range(120)
    ]  # fmt: skip
    with live.admin() as a:
        assert a.post("/v1/users", json={"user_id": "pager2"}).status_code == 200
    for i in range(105):
        live.store.add_fact(Fact(user_id="pager2", fact_id=f"f{i:03d}", text=f"fact {i}", valid_from=2_000 + i))
    with live.as_user("pager2") as c:
        assert c.post("/v1/users/pager2/upload", content=_jsonl(*prefs)).status_code == 201
        for path, key, total in (("preferences", "pref_id", 120), ("facts", "fact_id", 105)):
            first = c.get(f"/v1/users/pager2/{path}").json()
            assert (len(first["data"]), first["has_more"]) == (100, True), path
            rest = c.get(f"/v1/users/pager2/{path}", params={"offset": 100}).json()
            assert rest["has_more"] is False
            ids = [r[key] for r in first["data"] + rest["data"]]
            assert len(ids) == total and ids == sorted(ids), path  # oldest first, each once
            assert c.get(f"/v1/users/pager2/{path}", params={"limit": 10_001}).status_code == 422


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "text"),
    [
        ("documents", {"user_id": "bob", "text": "x"}, 409, "body.user_id", "path names user 'alice'"),
        ("documents", {"text": "x", "rating": "five"}, 422, "body.rating", "valid number"),
        ("interactions", {"item_id": "i", "interaction": "hover"}, 422, "body.interaction", "'rating'"),
        ("preferences", {"prompt": "p", "chosen": "same", "rejected": "same"}, 422, "body", "identical"),
        ("documents", {"text": "x", "colour": "red"}, 422, "body.colour", "Extra inputs"),
    ],
    ids=["other-user-in-body", "wrong-type", "bad-literal", "identical-pair", "unknown-field"],
)
def test_invalid_records_are_refused_naming_the_field(
    live: Live, path: str, body: dict, status: int, param: str, text: str
) -> None:
    with live.admin() as c:
        before = c.get("/v1/users/alice/export").json()
        r = c.post(f"/v1/users/alice/{path}", json=body)
        assert r.status_code == status
        assert r.json()["error"]["param"] == param and text in r.json()["error"]["message"]
        assert c.get("/v1/users/alice/export").json() == before


def test_upload_stores_every_line_in_one_go(live: Live) -> None:
    body = _jsonl(
        {"kind": "user", "age": 29, "occupation": "drummer"},
        {"text": "Sticks feel balanced.", "doc_kind": "review", "rating": 5, "timestamp": "2014-03-01"},
        {"kind": "interaction", "item_id": 42, "interaction": "rating", "value": 4, "timestamp": 1393632000},
        {"kind": "preference", "prompt": "Snare?", "chosen": "Maple", "rejected": "Steel", "source": "survey"},
    )
    with live.admin() as c:
        c.post("/v1/users", json={"user_id": "dave"})
        r = c.post("/v1/users/dave/upload", content=body, headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 201, r.text
        assert r.json() == {
            "user_id": "dave", "records": 4, "by_kind": {"user": 1, "document": 1, "interaction": 1, "preference": 1}
        }  # fmt: skip
        export = c.get("/v1/users/dave/export").json()
    assert export["user"]["occupation"] == "drummer"
    assert [d["text"] for d in export["documents"]] == ["Sticks feel balanced."]
    assert export["interactions"][0]["item_id"] == "42"
    assert export["preferences"][0]["pref_source"] == "survey"
    with live.admin() as c:  # the same file twice changes nothing
        c.post("/v1/users/dave/upload", content=body)
        assert c.get("/v1/users/dave/export").json() == export


@pytest.mark.parametrize(
    ("lines", "where"),
    [
        ([b'{"text": "ok"}', b'{"text": "ok2", "rating": "x"}'], "line 2, field 'rating'"),
        ([b'{"text": "ok"}', b"", b'{"text": "broken"'], "line 3: not valid JSON"),
        ([b'{"text": "ok"}', b'{"text": "caf\xe9"}'], "line 2: not valid UTF-8: byte 0xe9"),
        ([b'{"user_id": "alice", "text": "mine now"}'], "line 1, field 'user_id': is 'alice'"),
        ([b'{"kind": "item", "item_id": "x"}'], "line 1, field 'kind'"),
        ([b"[1, 2]"], "line 1: must be a JSON object"),
        ([b'{"kind": "interaction"}'], "line 1, field 'item_id': Field required"),
    ],
    ids=["wrong-type", "bad-json", "bad-utf8", "other-user", "bad-kind", "not-object", "missing-field"],
)
def test_upload_is_all_or_nothing_and_names_line_and_field(live: Live, lines: list[bytes], where: str) -> None:
    with live.admin() as c:
        c.post("/v1/users", json={"user_id": "erin"})
        before = c.get("/v1/users/erin/export").json()
        alice = c.get("/v1/users/alice/export").json()
        r = c.post("/v1/users/erin/upload", content=b"\n".join(lines))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert where in error["message"] and "nothing was stored" in error["message"]
        assert error["errors"][0]["line"] == int(where.split(",")[0].split(":")[0].split()[1])
        assert c.get("/v1/users/erin/export").json() == before
        assert c.get("/v1/users/alice/export").json() == alice


def test_upload_to_unknown_user_and_empty_upload(live: Live) -> None:
    with live.admin() as c:
        assert c.post("/v1/users/nobody/upload", content=b'{"text": "x"}').status_code == 404
        r = c.post("/v1/users/alice/upload", content=b"\n\n")
        assert r.status_code == 422 and "no records" in r.json()["error"]["message"]


def test_export_and_delete_remove_exactly_one_user(live: Live) -> None:
    with live.admin() as c:
        c.post("/v1/users", json={"user_id": "frank"})
        c.post("/v1/users/frank/documents", json={"text": "Frank's only review."})
        key = live.user_key("frank")
        bob = c.get("/v1/users/bob/export").json()
        export = c.get("/v1/users/frank/export").json()
        assert export["user"]["user_id"] == "frank" and len(export["documents"]) == 1
        r = c.delete("/v1/users/frank")
        assert r.status_code == 200
        assert r.json()["rows"]["documents"] == 1 and r.json()["rows"]["users"] == 1 and r.json()["keys_deleted"] == 1
        assert c.get("/v1/users/frank").status_code == 404
        assert c.get("/v1/users/frank/export").status_code == 404
        assert c.delete("/v1/users/frank").status_code == 404
        assert c.get("/v1/users/bob/export").json() == bob
    with live.client(key) as c:  # the deleted user's key went with the user
        assert c.get("/v1/users/frank").status_code == 401


def test_deleting_a_user_purges_the_caches_cli_runs_keep(live: Live) -> None:
    """The embedding cache (vectors of every text a CLI run embedded, queries included) is
    cleared, and the training queue loses the user's own jobs, not anyone else's."""
    import sqlite3

    from tailorlm.eval.cache import EMBEDDING_CACHE_FILE, CachedEmbedder
    from tailorlm.personalize.training.jobs import TrainJob
    from tailorlm.personalize.training.queue import DEFAULT_QUEUE_FILE, TrainQueue

    cache_dir = Path(live.app.state.service.settings.cache_dir)
    vectors = CachedEmbedder(_ByteEmbedder(), cache_dir / EMBEDDING_CACHE_FILE)
    vectors.embed(["Gina's private note", "what Gina asked"])
    vectors.close()
    assert _ByteEmbedder.vector("Gina's private note") in _file_bytes(cache_dir / EMBEDDING_CACHE_FILE)
    queue = TrainQueue(cache_dir / DEFAULT_QUEUE_FILE)
    queue.add([TrainJob("lora", "user", owner, "chat") for owner in ("gina", "bob")])
    queue.add([TrainJob("lora", "global", "", "chat"), TrainJob("lora", "persona", "gina", "chat")])
    queue.close()
    with live.admin() as c:
        c.post("/v1/users", json={"user_id": "gina"})
        r = c.delete("/v1/users/gina")
    assert r.status_code == 200, r.text
    assert r.json()["rows"]["embedding_cache"] == 2 and r.json()["rows"]["train_queue"] == 1
    with sqlite3.connect(cache_dir / EMBEDDING_CACHE_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone() == (0,)
    assert _ByteEmbedder.vector("Gina's private note") not in _file_bytes(cache_dir / EMBEDDING_CACHE_FILE)
    queue = TrainQueue(cache_dir / DEFAULT_QUEUE_FILE)
    left = sorted((q.job.scope, q.job.owner) for q in queue.jobs())
    queue.close()
    assert left == [("global", ""), ("persona", "gina"), ("user", "bob")]  # a persona id is not a user id
    for made in (EMBEDDING_CACHE_FILE, DEFAULT_QUEUE_FILE):  # the server is shared with later tests
        (cache_dir / made).unlink()


def test_a_cache_that_cannot_be_purged_does_not_undo_or_hide_the_deletion(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    from tailorlm.eval.cache import EMBEDDING_CACHE_FILE

    broken = Path(live.app.state.service.settings.cache_dir) / EMBEDDING_CACHE_FILE
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not a database " * 100)
    try:
        with live.admin() as c:
            c.post("/v1/users", json={"user_id": "hank"})
            r = c.delete("/v1/users/hank")
            assert r.status_code == 200 and r.json()["rows"]["users"] == 1
            assert "embedding_cache" not in r.json()["rows"]
            assert c.get("/v1/users/hank").status_code == 404
        assert any("could not be purged" in rec.getMessage() for rec in caplog.records)
    finally:
        broken.unlink()


class _ByteEmbedder:
    """Vectors whose bytes can be looked for in the cache's file (a deleted row's content
    stays in the file's free pages unless it is overwritten)."""

    name, version, dim = "bytes", "1", 4

    @staticmethod
    def vector(text: str) -> bytes:
        import numpy as np

        return np.array([len(text), text.count(" "), ord(text[0]), 1.0], dtype=np.float32).tobytes()

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        return np.stack([np.frombuffer(self.vector(t), dtype=np.float32) for t in texts])


def _file_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, if any."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_facts_list_and_forget(live: Live) -> None:
    live.store.add_fact(Fact(user_id="bob", fact_id="f1", text="Bob plays bass.", valid_from=1, valid_to=5))
    live.store.add_fact(Fact(user_id="bob", fact_id="f2", text="Bob plays guitar.", valid_from=5))
    with live.as_user("bob") as c:
        assert [f["text"] for f in c.get("/v1/users/bob/facts").json()["data"]] == ["Bob plays guitar."]
        every = c.get("/v1/users/bob/facts", params={"include_invalid": True}).json()["data"]
        assert [(f["fact_id"], f["valid_to"]) for f in every] == [("f1", 5), ("f2", None)]
        r = c.delete("/v1/users/bob/facts/f2")
        assert r.json() == {"user_id": "bob", "fact_id": "f2", "forgotten": 1}
        assert c.get("/v1/users/bob/facts").json()["data"] == []
        assert c.delete("/v1/users/bob/facts/f2").status_code == 404


def test_compare_gives_both_answers_and_the_preference_can_be_stored(live: Live) -> None:
    with live.as_user("alice") as c:
        r = c.post("/v1/users/alice/compare", json={"message": "Which strings for me?", "max_tokens": 16})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["personalized"]["text"] == out["baseline"]["text"] == "echo: Which strings for me?"
        usage = out["personalized"]["tailorlm"]
        assert usage["method"] == "rag-bm25+profile" and usage["methods"] == ["rag-bm25", "profile"]
        assert any(item["text"] in ALICE_DOCS for item in usage["retrieved"])
        (personalized,), (baseline,) = (call.batch for call in live.generator.calls[-2:])  # two rows of the batch
        assert "Warm nylon" in personalized[0]["content"] and "Warm nylon" not in baseline[0]["content"]
        r = c.post("/v1/users/alice/compare", json={"message": "x", "method": "nope"})
        assert r.status_code == 404 and r.json()["error"]["param"] == "method"


def test_overview_has_what_the_workbench_shows(live: Live) -> None:
    with live.as_user("alice") as c:
        ov = c.get("/v1/users/alice/overview").json()
    assert ov["user"]["occupation"] == "teacher" and ov["user"]["attributes"] == {"plays": "classical guitar"}
    assert ov["counts"]["documents"] >= 3 and ov["counts"]["interactions"] >= 1
    stamps = [d["timestamp"] for d in ov["recent_documents"]]
    dated = [t for t in stamps if t is not None]
    assert dated == sorted(dated, reverse=True) and stamps[: len(dated)] == dated  # newest first, undated last
    assert ov["scope"] == "user" and ov["pooled_context"] is False
    assert isinstance(ov["facts"], list)
