"""Bad input of every kind gets a 4xx JSON error saying what and where, and the server keeps serving."""

from __future__ import annotations

import pytest
from serve_harness import Live

CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}
OK_CHAT = {"model": "fake", "messages": [{"role": "user", "content": "still there?"}]}

CASES = [
    # (id, method, path, request kwargs, status, param, words in the message)
    ("malformed-json", "POST", CHAT, {"content": b'{"model": "fake",', "headers": JSON}, 400, "body",
     "not valid JSON: Expecting property name enclosed in double quotes at line 1, column 18"),
    ("trailing-garbage", "POST", CHAT, {"content": b'{"model": "fake"} x', "headers": JSON}, 400, "body", "Extra data"),
    ("invalid-utf8", "POST", CHAT, {"content": b'{"model": "fa\xffke"}', "headers": JSON}, 400, "body",
     "not valid UTF-8: byte 0xff at offset 13 (line 1, column 14)"),
    ("too-deep", "POST", CHAT, {"content": b"[" * 100_000, "headers": JSON}, 400, "body", "not valid JSON"),
    ("messages-not-a-list", "POST", CHAT, {"json": {"model": "fake", "messages": "hi"}}, 422, "body.messages",
     "body.messages: Input should be a valid list"),
    ("max-tokens-a-string", "POST", CHAT, {"json": {**OK_CHAT, "max_tokens": "ten"}}, 422, "body.max_tokens",
     "valid integer"),
    ("stream-a-string", "POST", CHAT, {"json": {**OK_CHAT, "stream": "yes"}}, 422, "body.stream", "valid boolean"),
    ("role-unknown", "POST", CHAT, {"json": {"model": "fake", "messages": [{"role": "robot", "content": "x"}]}},
     422, "body.messages[0].role", "'system'"),
    ("empty-messages", "POST", CHAT, {"json": {"model": "fake", "messages": []}}, 422, "body.messages",
     "at least 1 item"),
    ("n-two", "POST", CHAT, {"json": {**OK_CHAT, "n": 2}}, 422, "body.n", "less than or equal to 1"),
    ("temperature-negative", "POST", CHAT, {"json": {**OK_CHAT, "temperature": -1}}, 422, "body.temperature",
     "greater than or equal to 0"),
    ("body-an-array", "POST", "/v1/users", {"json": [1, 2]}, 422, "body", "valid dictionary"),
    ("no-content-type", "POST", "/v1/users", {"content": b'{"user_id": "x"}'}, 422, "body",
     "Content-Type: application/json"),
    ("age-a-string", "POST", "/v1/users", {"json": {"user_id": "x", "age": "old"}}, 422, "body.age", "valid integer"),
    ("query-not-a-number", "GET", "/v1/users", {"params": {"limit": "all"}}, 422, "query.limit", "valid integer"),
    ("unknown-user-get", "GET", "/v1/users/ghost", {}, 404, "user_id", "unknown user 'ghost'"),
    ("unknown-user-post", "POST", "/v1/users/ghost/documents", {"json": {"text": "boo"}}, 404, "user_id",
     "unknown user 'ghost'"),
    ("unknown-user-chat", "POST", CHAT, {"json": {**OK_CHAT, "model": "tailorlm/rag-bm25", "user": "ghost"}}, 404,
     "user_id", "unknown user 'ghost'"),
    ("oversized", "POST", "/v1/users/alice/documents", {"json": {"text": "x" * (1 << 20)}}, 413, "body",
     "larger than the limit of 1,048,576 bytes"),
    ("user-id-slash", "POST", "/v1/users", {"json": {"user_id": "a/b"}}, 422, "body.user_id", "contains '/'"),
    ("user-id-nul", "POST", "/v1/users", {"json": {"user_id": "a\u0000b"}}, 422, "body.user_id",
     "control character '\\x00' at position 1"),
    ("user-id-dotdot", "POST", "/v1/users", {"json": {"user_id": ".."}}, 422, "body.user_id", "path step"),
    ("timestamp-2-63", "POST", "/v1/users/alice/documents", {"json": {"text": "x", "timestamp": 2**63}}, 422,
     "body.timestamp", "outside the supported range"),
    ("timestamp-iso-string-huge", "POST", "/v1/users/alice/interactions",
     {"json": {"item_id": "i", "interaction": "view", "timestamp": "1e300"}}, 422, "body.timestamp",
     "outside the supported range"),
    ("before-2-63", "GET", "/v1/users/alice/documents", {"params": {"before": 2**63}}, 422, "query.before",
     "less than or equal to 9223372036854775807"),
    ("offset-2-63", "GET", "/v1/users", {"params": {"offset": 2**63}}, 422, "query.offset",
     "less than or equal to 9223372036854775807"),
    ("seed-2-63", "POST", CHAT, {"json": {**OK_CHAT, "seed": 2**63}}, 422, "body.seed",
     "less than or equal to 9223372036854775807"),
    ("key-for-unknown-user", "POST", "/v1/keys", {"json": {"user_id": "ghost"}}, 404, "user_id",
     "unknown user 'ghost'; create it with POST /v1/users first"),
    ("unknown-route", "GET", "/v1/nothing-here", {}, 404, None, "no route GET /v1/nothing-here"),
    ("wrong-method", "PUT", "/v1/users", {"json": {}}, 405, None, "method PUT is not allowed on /v1/users"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "param", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_a_clear_json_error_and_the_server_keeps_serving(
    live: Live, method: str, path: str, kwargs: dict, status: int, param: str | None, words: str
) -> None:
    with live.admin() as c:
        r = c.request(method, path, **kwargs)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert words in error["message"]
        assert error["param"] == param
        assert error["type"]
        # Still serving, on the same connection pool:
        assert c.get("/health").json() == {"status": "ok"}
        assert c.post(CHAT, json=OK_CHAT).json()["choices"][0]["message"]["content"] == "echo: still there?"


def test_405_names_every_method_the_path_takes_in_allow(live: Live) -> None:
    with live.admin() as c:
        for method, path, allowed in [
            ("PUT", "/v1/users", "GET, POST"),
            ("PATCH", "/v1/users/alice", "DELETE, GET"),
            ("GET", "/v1/chat/completions", "POST"),
        ]:
            r = c.request(method, path)
            assert r.status_code == 405 and r.headers["allow"] == allowed, (method, path, r.headers.get("allow"))
            assert r.json()["error"]["message"].endswith(f"allowed: {allowed}")


def test_a_schema_valid_id_or_kind_is_never_refused_as_blank() -> None:
    """The spec's pattern for ids and kinds and the records' own check agree on every string:
    what the first lets through the second keeps (schemathesis found doc_kind "" refused while
    the spec allowed it), and whitespace-only values are refused by the schema already."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tailorlm.data.records import Document
    from tailorlm.serve.schemas import NONBLANK_PATTERN, DocumentIn

    edge = st.sampled_from(["\x1c", "\x1f", "\x85", "\ufeff", "\xa0", "\u3000", " ", "\t", "a", "é"])

    @settings(max_examples=400, derandomize=True, database=None)
    @given(st.lists(edge | st.characters(), min_size=1, max_size=8).map("".join))
    def agree(value: str) -> None:
        schema_ok = re.search(NONBLANK_PATTERN, value) is not None
        try:
            Document(user_id="u", text="t", doc_kind=value, doc_id=value, item_id=value)
            record_ok = True
        except ValueError:
            record_ok = False
        assert schema_ok == record_ok, f"{value!r}: schema {'accepts' if schema_ok else 'refuses'} it"
        try:
            DocumentIn(text="t", doc_kind=value)
            model_ok = True
        except ValueError:
            model_ok = False
        assert model_ok == schema_ok  # pydantic's engine reads the pattern as Python does

    agree()
