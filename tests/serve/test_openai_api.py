"""The OpenAI-compatible routes over real HTTP: the official client, SSE streaming, the
foundation's HTTP backend, personalization reaching the model, and the model lock."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serve_harness import ALICE_DOCS, BOB_DOCS, Live, live_server

from tailorlm.models import BackendError, GenerationConfig, Messages, OpenAICompatibleGenerator, chat
from tailorlm.testing import FakeDecodeBatch, FakeGenerator

ASK = [{"role": "user", "content": "Which guitar strings suit me?"}]


def _client(live: Live, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key or live.admin_key, max_retries=0)


def test_models_list_pipelines_and_the_backend_model(live: Live) -> None:
    ids = [m.id for m in _client(live).models.list()]
    assert {"tailorlm/identity", "tailorlm/rag-bm25", "tailorlm/rag-bm25+profile", "tailorlm/profile"} <= set(ids)
    assert live.generator.name in ids


def test_official_client_gets_a_personalized_answer_with_the_usage_record(live: Live) -> None:
    response = _client(live).chat.completions.create(model="tailorlm/rag-bm25", messages=ASK, user="alice")  # type: ignore[arg-type]
    assert response.choices[0].message.content == "echo: Which guitar strings suit me?"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.total_tokens > 0
    usage = response.model_extra["tailorlm"]  # the extension field survives the typed client
    assert usage["method"] == "rag-bm25" and usage["user"] == "alice" and usage["scope"] == "user"
    texts = [r["text"] for r in usage["retrieved"]]
    assert texts and all(t in ALICE_DOCS for t in texts if t)  # only alice's own documents
    assert "Warm nylon strings" in texts[0]  # the most relevant one first
    # The model saw them in its system message, ahead of the client's conversation.
    system, *turns = live.generator.calls[-1].batch[0]
    assert system["role"] == "system" and "Warm nylon strings" in system["content"]
    assert turns == ASK


def test_streaming_matches_the_plain_answer_chunk_by_chunk(live: Live) -> None:
    client = _client(live)
    plain = client.chat.completions.create(model="tailorlm/rag-bm25", messages=ASK, user="alice")  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model="tailorlm/rag-bm25", messages=ASK, user="alice", stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really in pieces
    assert chunks[0].model_extra["tailorlm"]["retrieved"] == plain.model_extra["tailorlm"]["retrieved"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_sse_wire_format(live: Live) -> None:
    body = {"model": "tailorlm/rag-bm25", "user": "bob", "messages": ASK, "stream": True}
    with live.admin() as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][6:])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"
    assert {r["text"] for r in first["tailorlm"]["retrieved"]} <= set(BOB_DOCS)


def test_client_system_message_and_earlier_turns_are_kept(live: Live) -> None:
    messages = [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Ahoy"},
        {"role": "user", "content": "Any pedal for metal?"},
    ]
    _client(live).chat.completions.create(model="tailorlm/rag-bm25", messages=messages, user="bob")  # type: ignore[arg-type]
    system, *turns = live.generator.calls[-1].batch[0]
    assert system["content"].startswith("Answer like a pirate.")
    assert "distortion pedal" in system["content"]  # bob's most relevant review
    assert turns == messages[1:]


def test_backend_model_passes_through_unpersonalized(live: Live) -> None:
    response = _client(live).chat.completions.create(model=live.generator.name, messages=ASK, user="alice")  # type: ignore[arg-type]
    assert "tailorlm" not in (response.model_extra or {})
    assert live.generator.calls[-1].batch[0] == ASK


def test_user_scoped_key_personalizes_for_its_user_and_no_other(live: Live) -> None:
    client = _client(live, live.user_key("bob"))
    response = client.chat.completions.create(model="tailorlm/rag-bm25", messages=ASK)  # type: ignore[arg-type]
    assert response.model_extra["tailorlm"]["user"] == "bob"  # the key's user, without `user`
    with pytest.raises(openai.PermissionDeniedError, match="scoped to user 'bob'"):
        client.chat.completions.create(model="tailorlm/rag-bm25", messages=ASK, user="alice")  # type: ignore[arg-type]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model=live.generator.name, messages=ASK, user="alice")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"model": "gpt-4o", "user": "alice"}, openai.NotFoundError, "unknown model 'gpt-4o'"),
        ({"model": "tailorlm/no-such-method", "user": "alice"}, openai.NotFoundError, "unknown method"),
        ({"model": "tailorlm/rag-bm25"}, openai.BadRequestError, "needs the 'user' field"),
        ({"model": "tailorlm/rag-bm25", "user": "nobody"}, openai.NotFoundError, "unknown user 'nobody'"),
    ],
    ids=["unknown-model", "unknown-method", "no-user", "unknown-user"],
)
def test_chat_errors_are_openai_errors(live: Live, kwargs: dict[str, Any], error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        _client(live).chat.completions.create(messages=ASK, **kwargs)  # type: ignore[call-overload]


def test_foundation_http_backend_against_this_server(live: Live) -> None:
    """The foundation's OpenAICompatibleGenerator, pointed at tailorlm, gets personalized answers
    with a user-scoped key (its requests carry no ``user``) and a clear error otherwise."""
    url = f"{live.url}/v1"
    with OpenAICompatibleGenerator(url, model="tailorlm/rag-bm25", api_key=live.user_key("alice")) as remote:
        assert chat(remote, ASK, config=GenerationConfig(max_new_tokens=3)) == "echo: Which guitar"
    assert "Warm nylon strings" in live.generator.calls[-1].batch[0][0]["content"]
    with OpenAICompatibleGenerator(url, model=live.generator.name, api_key=live.admin_key, max_concurrency=3) as remote:
        batch = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
        assert remote.generate(batch) == [f"echo: q{i}" for i in range(6)]
    with (
        OpenAICompatibleGenerator(url, model="tailorlm/rag-bm25", api_key=live.admin_key) as remote,
        pytest.raises(BackendError, match=r"HTTP 400: .*needs the 'user' field"),
    ):
        chat(remote, ASK)
    with (
        OpenAICompatibleGenerator(
            url, model="fake", api_key="tlm_0000000000000000_wrong-key-wrong-key-wrong-key-00"
        ) as r,
        pytest.raises(BackendError, match="HTTP 401: invalid or revoked API key"),
    ):
        chat(r, ASK)


class GateGenerator(FakeGenerator):
    """Its decode batch blocks inside each prefill until released, and records overlaps."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.active = 0
        self.max_active = 0
        self._count = threading.Lock()

    def decode_batch(self) -> FakeDecodeBatch:
        gate = self

        class Gated(FakeDecodeBatch):
            def add(self, row_id: int, row: Any, config: Any) -> list[Any]:
                with gate._count:
                    gate.active += 1
                    gate.max_active = max(gate.max_active, gate.active)
                gate.entered.set()
                try:
                    if not gate.release.wait(30):
                        raise TimeoutError("the test never released the generator")
                    return super().add(row_id, row, config)
                finally:
                    with gate._count:
                        gate.active -= 1

        return Gated(self)


def test_generation_runs_off_the_event_loop_and_one_model_call_at_a_time(tmp_path: Path) -> None:
    gate = GateGenerator()
    with live_server(tmp_path, generator=gate, memory=False) as server:
        results: list[tuple[int, str]] = []

        def ask(i: int) -> None:
            with server.admin() as c:
                r = c.post(
                    "/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": f"q{i}"}]}
                )
                results.append((r.status_code, r.json()["choices"][0]["message"]["content"]))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        assert gate.entered.wait(10)
        # One prefill holds the model and three requests wait in the scheduler: the server still answers.
        with server.admin() as c:
            assert c.get("/v1/users").json()["data"] == ["alice", "bob"]
            assert c.get("/v1/models").status_code == 200
        gate.release.set()
        for th in threads:
            th.join(30)
    assert sorted(results) == [(200, f"echo: q{i}") for i in range(4)]
    assert gate.max_active == 1  # one scheduler thread drives the model


def test_bad_stream_request_fails_before_streaming(live: Live) -> None:
    with live.admin() as c:
        r = c.post("/v1/chat/completions", json={"model": "tailorlm/rag-bm25", "messages": ASK, "stream": True})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert "needs the 'user' field" in r.json()["error"]["message"]


def test_content_parts_and_unsupported_parts(live: Live) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}]
    with live.admin() as c:
        r = c.post("/v1/chat/completions", json={"model": "fake", "messages": parts})
        assert r.json()["choices"][0]["message"]["content"] == "echo: Hi there"
        image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        r = c.post("/v1/chat/completions", json={"model": "fake", "messages": image})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content[0]"


def test_max_tokens_cut_reports_length(live: Live) -> None:
    with live.admin() as c:
        r = c.post("/v1/chat/completions", json={"model": "fake", "messages": ASK, "max_tokens": 2})
    assert r.json()["choices"][0] == {
        "index": 0, "message": {"role": "assistant", "content": "echo: Which"}, "finish_reason": "length"
    }  # fmt: skip


def test_plain_httpx_without_key_is_refused(live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/chat/completions", json={"model": "fake", "messages": ASK})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in r.json()["error"]["message"]


class FailingGenerator(FakeGenerator):
    """Fails on cue: 'upstream' -> BackendError (an HTTP backend's outage), 'explode' -> a bug.

    Like an HTTP backend it has no decode batch: the scheduler runs each request whole."""

    decode_batch = None

    def generate(self, batch: Sequence[Messages], **kw: Any) -> list[str]:
        text = batch[0][-1]["content"]  # type: ignore[index]
        if "upstream" in text:
            raise BackendError("upstream answered HTTP 503: overloaded", status_code=503)
        if "explode" in text:
            raise RuntimeError("secret internals: SELECT * FROM users WHERE user_id = 'bob'")
        return super().generate(batch, **kw)


def test_model_failures_are_json_errors_and_the_server_keeps_serving(tmp_path: Path) -> None:
    with live_server(tmp_path, generator=FailingGenerator(), memory=False) as server, server.admin() as c:
        say = lambda text: c.post(  # noqa: E731
            "/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": text}]}
        )
        r = say("upstream please")
        assert r.status_code == 502 and "overloaded" in r.json()["error"]["message"]
        r = say("explode please")
        assert r.status_code == 500 and r.json()["error"] == {
            "message": "internal error (RuntimeError); see the server log", "type": "server_error",
            "param": None, "code": None,
        }  # fmt: skip
        assert say("still fine?").json()["choices"][0]["message"]["content"] == "echo: still fine?"
