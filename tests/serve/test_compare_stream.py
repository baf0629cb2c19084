"""The workbench's compare, streamed: ``POST /v1/users/{id}/compare`` with ``"stream": true``.

Real sockets and the real app over the fake generator's decode batch (one word per step), so
the two rows really share decode steps. Checked: both sides' events arrive while the rows
are decoded and concatenate to the JSON answers; each side ends with its usage record;
errors before the stream are JSON statuses and after it error events; a client that goes
away, mid-stream or while the rows still wait for a batch slot, cancels both rows.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_harness import Live, live_server, wait_for

from tailorlm.models.base import GenerationConfig
from tailorlm.testing import FakeGenerator

COMPARE = "/v1/users/alice/compare"
LONG = " ".join(f"w{i}" for i in range(400))  # the fake answers with the message, one word per step


class SideTellingFake(FakeGenerator):
    """Answers that differ per side: the personalized prompt quotes alice's reviews, the
    baseline's does not, so a delta sent under the wrong side would be caught."""

    def _words(self, conv: list[dict[str, str]], config: GenerationConfig, adapter: str | None) -> list[str]:
        personal = any("Warm nylon" in m["content"] for m in conv if m["role"] == "system")
        return ["mine:" if personal else "anyone:", *super()._words(conv, config, adapter)][: config.max_new_tokens]


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any] | str]:
    """The JSON objects of an SSE stream's ``data:`` lines; ``"[DONE]"`` as the string."""
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            yield data if data == "[DONE]" else json.loads(data)


def _scheduler(server: Live) -> Any:
    return server.app.state.service.scheduler


@pytest.fixture
def remembered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """The conversation turns the route hands to memory (memory itself is off here)."""
    from tailorlm.serve.service import Service

    turns: list[tuple[str, Any]] = []
    monkeypatch.setattr(Service, "remember", lambda self, user_id, messages: turns.append((user_id, messages)))
    yield turns


def test_the_stream_carries_both_sides_as_decoded_and_ends_like_the_json_answer(
    tmp_path: Path, remembered: list[tuple[str, Any]]
) -> None:
    message = "Which warm nylon strings suit my classical guitar? " + " ".join(f"word{i}" for i in range(40))
    body = {"message": message, "method": "rag-bm25", "max_tokens": 64}
    with live_server(tmp_path, generator=SideTellingFake(), memory=False) as server, server.as_user("alice") as c:
        plain = c.post(COMPARE, json=body)
        assert plain.status_code == 200, plain.text
        with c.stream("POST", COMPARE, json={**body, "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = list(_events(r.iter_lines()))
    expected = plain.json()
    assert expected["personalized"]["text"] == f"mine: echo: {message}"
    assert expected["baseline"]["text"] == f"anyone: echo: {message}"
    assert events[-1] == "[DONE]"
    objects = [e for e in events if isinstance(e, dict)]
    deltas = [e for e in objects if e["type"] == "delta"]
    assert {e["type"] for e in objects} == {"delta", "done"}
    for side in ("personalized", "baseline"):
        streamed = "".join(e["delta"] for e in deltas if e["side"] == side)
        assert streamed == expected[side]["text"]  # greedy: the same answer, token by token
        (done,) = [e for e in objects if e["type"] == "done" and e["side"] == side]
        assert done["text"] == streamed and done["finish_reason"] == "stop"
        assert done["usage"]["completion_tokens"] == len(streamed.split()) and done["usage"]["prompt_tokens"] > 0
    # Decoded together: the sides take turns, not one whole answer after the other.
    sides = [e["side"] for e in deltas]
    switches = sum(a != b for a, b in itertools.pairwise(sides))
    assert switches > 10, sides
    done_pers = next(e for e in objects if e["type"] == "done" and e["side"] == "personalized")
    assert done_pers["tailorlm"] == expected["personalized"]["tailorlm"]  # retrieved ids, scope, prompt tokens
    assert done_pers["tailorlm"]["retrieved"] and done_pers["tailorlm"]["scope"] == "user"
    assert "tailorlm" not in next(e for e in objects if e["type"] == "done" and e["side"] == "baseline")
    turn = [{"role": "user", "content": message}, {"role": "assistant", "content": expected["personalized"]["text"]}]
    assert remembered == [("alice", turn), ("alice", turn)]  # the JSON compare's turn, then the stream's


def test_a_disconnect_mid_stream_cancels_both_rows(tmp_path: Path, remembered: list[tuple[str, Any]]) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False) as server:
        sched = _scheduler(server)
        body = {"message": LONG, "method": "rag-bm25", "max_tokens": 400, "stream": True}
        with server.as_user("alice") as c, c.stream("POST", COMPARE, json=body) as r:
            events = _events(r.iter_lines())
            seen = {next(events)["side"] for _ in range(6)}  # type: ignore[index]
            assert seen == {"personalized", "baseline"}
            assert sched.stats().running == 2
        wait_for(lambda: sched.stats().in_flight == 0, "both cancelled rows to leave the batch")
        assert len(sched._batch.sizes) < 300  # long before the 400-word answers were done
        assert remembered == []  # a cancelled compare is no conversation turn
        with server.as_user("alice") as c:  # and the key's slots were given back
            assert c.post(COMPARE, json={"message": "still there?", "max_tokens": 8}).status_code == 200


def test_a_disconnect_while_waiting_for_a_batch_slot_cancels_both_rows(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False, max_batch_size=1) as server:
        sched = _scheduler(server)
        chat = {"model": "fake", "messages": [{"role": "user", "content": LONG}], "max_tokens": 400, "stream": True}
        with server.admin() as c, c.stream("POST", "/v1/chat/completions", json=chat) as r:
            lines = r.iter_lines()  # kept: closing this generator would close the response
            next(lines)  # the one batch slot is taken for the next ~4 s
            outcome: list[str] = []

            def give_up() -> None:  # a client that stops waiting for the first token
                with server.as_user("alice") as waiting:
                    try:
                        waiting.post(COMPARE, json={"message": "hi", "method": "rag-bm25", "stream": True}, timeout=1.0)
                        outcome.append("answered")
                    except httpx.ReadTimeout:
                        outcome.append("gave up")

            waiter = threading.Thread(target=give_up)
            waiter.start()
            wait_for(lambda: sched.stats().queued == 2, "both compare rows to queue")
            waiter.join(30)
            assert outcome == ["gave up"]
            # The client gave up: both rows leave the queue while the chat is still decoding.
            wait_for(lambda: sched.stats().queued == 0, "the abandoned rows to leave the queue")
            assert sched.stats().running == 1 and sum(s > 1 for s in sched._batch.sizes) == 0


def test_errors_before_the_stream_are_json_and_after_it_error_events(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False, request_timeout_s=1.0) as server:
        with server.as_user("alice") as c:
            r = c.post(COMPARE, json={"message": "x", "method": "nope", "stream": True})
            assert r.status_code == 404 and r.json()["error"]["param"] == "method"
            r = c.post("/v1/users/bob/compare", json={"message": "x", "stream": True})
            assert r.status_code == 403 and r.headers["content-type"].startswith("application/json")
            r = c.post(COMPARE, json={"message": "x", "stream": "yes"})
            assert r.status_code == 422 and r.json()["error"]["param"] == "body.stream"
            body = {"message": LONG, "method": "rag-bm25", "max_tokens": 400, "stream": True}
            with c.stream("POST", COMPARE, json=body) as r:  # 400 words at 10 ms: past the 1 s limit
                assert r.status_code == 200
                events = list(_events(r.iter_lines()))
        assert events[-1] == "[DONE]"
        error = events[-2]
        assert isinstance(error, dict) and error["type"] == "error" and error["side"] in ("personalized", "baseline")
        assert error["error"]["code"] == "request_timeout" and "1 s" in error["error"]["message"]
        assert not [e for e in events if isinstance(e, dict) and e["type"] == "done"]
        wait_for(lambda: _scheduler(server).stats().in_flight == 0, "the other row to be cancelled")


def test_the_spec_documents_the_stream(live: Live) -> None:
    op = live.app.openapi()["paths"]["/v1/users/{user_id}/compare"]["post"]
    assert {"application/json", "text/event-stream"} <= set(op["responses"]["200"]["content"])
    assert '"stream": true' in op["responses"]["200"]["description"]
    schema = live.app.openapi()["components"]["schemas"]["CompareRequest"]
    assert schema["properties"]["stream"]["type"] == "boolean"
