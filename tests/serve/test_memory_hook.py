"""The conversational-memory hook: every turn is observed in the background, in order, on one
worker thread; facts, their invalidation and forgetting show through the API; memory can be
switched off; a deleted user is never brought back by a late memory write.

``ScriptedMemory`` stands in for ``tailorlm.memory.Memory`` (same interface, a one-rule
extractor), so these tests check the service's wiring, not extraction quality; the last
test plugs in the real ``tailorlm.memory`` when it is installed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_harness import Live, live_server

from tailorlm.data import Fact, Store, content_id

CITY = re.compile(r"\bI live in (\w+)")


class ScriptedMemory:
    """'I live in X' is a fact; a new city closes the old fact (valid_to) instead of overwriting it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.observed: list[tuple[str, list[dict[str, str]]]] = []
        self.fail_next = False
        self.gate: threading.Event | None = None  # when set, observe waits for it
        self.entered = threading.Event()

    def observe(self, user_id: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        self.entered.set()
        if self.gate is not None and not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        self.observed.append((user_id, messages))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("extraction failed")
        added = []
        for m in messages:
            if m["role"] == "user" and (match := CITY.search(m["content"])):
                for old in self.store.get_facts(user_id=user_id):
                    self.store.invalidate_fact(user_id=user_id, fact_id=old.fact_id)
                fact = Fact(user_id=user_id, fact_id=content_id(user_id, match[1]), text=f"Lives in {match[1]}")
                self.store.add_fact(fact)
                added.append(fact)
        return {"added": added}

    def facts(self, user_id: str, include_invalid: bool = False) -> list[Fact]:
        return self.store.get_facts(user_id=user_id, valid_only=not include_invalid)

    def forget(self, user_id: str, fact_id: str | None = None, text: str | None = None) -> int:
        return int(self.store.delete_fact(user_id=user_id, fact_id=fact_id)) if fact_id else 0


@pytest.fixture(scope="module")
def mem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, ScriptedMemory]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tailorlm.serve.app._memory_factory", lambda store, generator: ScriptedMemory(store))
        with live_server(tmp_path_factory.mktemp("memory"), memory=True) as server:
            yield server, server.app.state.service.memory.memory  # the worker's own instance


def _say(live: Live, user: str, text: str, model: str = "tailorlm/rag-bm25") -> dict:
    with live.as_user(user) as c:
        r = c.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200, r.text
        return r.json()


def _facts(live: Live, user: str, **params: Any) -> list[dict]:
    with live.as_user(user) as c:
        return c.get(f"/v1/users/{user}/facts", params=params).json()["data"]


def test_a_fact_is_remembered_contradicted_and_forgotten(mem: tuple[Live, ScriptedMemory]) -> None:
    live, memory = mem
    answer = _say(live, "alice", "By the way, I live in Paris.")["choices"][0]["message"]["content"]
    live.app.state.memory_queue.join()  # the background worker has caught up
    assert memory.observed[-1] == (
        "alice", [{"role": "user", "content": "By the way, I live in Paris."}, {"role": "assistant", "content": answer}]
    )  # fmt: skip
    assert [f["text"] for f in _facts(live, "alice")] == ["Lives in Paris"]

    _say(live, "alice", "Actually I live in Berlin now.")
    live.app.state.memory_queue.join()
    assert [f["text"] for f in _facts(live, "alice")] == ["Lives in Berlin"]
    history = {f["text"]: f["valid_to"] for f in _facts(live, "alice", include_invalid=True)}
    assert history["Lives in Berlin"] is None and history["Lives in Paris"] is not None  # closed, not overwritten

    berlin = _facts(live, "alice")[0]["fact_id"]
    with live.as_user("alice") as c:
        assert c.delete(f"/v1/users/alice/facts/{berlin}").json()["forgotten"] == 1
        assert c.get("/v1/users/alice/overview").json()["facts"] == []
        assert "Lives in Berlin" not in c.get("/v1/users/alice/export").text
    assert _facts(live, "bob") == []  # nothing leaked to another user


def test_compare_and_pass_through_turns_are_observed_only_for_known_users(mem: tuple[Live, ScriptedMemory]) -> None:
    live, memory = mem
    n = len(memory.observed)
    with live.as_user("bob") as c:
        c.post("/v1/users/bob/compare", json={"message": "I live in Lyon", "max_tokens": 8})
    with live.admin() as c:
        for user in ("bob", "stranger", None):
            body = {"model": "fake", "messages": [{"role": "user", "content": "hello"}]}
            c.post("/v1/chat/completions", json={**body, **({"user": user} if user else {})})
    live.app.state.memory_queue.join()
    assert [u for u, _ in memory.observed[n:]] == ["bob", "bob"]  # compare, then bob's pass-through turn
    assert [f["text"] for f in _facts(live, "bob")] == ["Lives in Lyon"]
    assert not live.store.has_user(user_id="stranger")


def test_a_failing_observation_does_not_stop_memory_or_the_request(mem: tuple[Live, ScriptedMemory]) -> None:
    live, memory = mem
    worker = live.app.state.service.memory
    failed = worker.failed
    memory.fail_next = True
    _say(live, "bob", "I live in Rome")  # the request itself succeeds
    _say(live, "bob", "I live in Oslo")
    live.app.state.memory_queue.join()
    assert worker.failed == failed + 1 and "extraction failed" in worker.last_error
    assert [f["text"] for f in _facts(live, "bob")] == ["Lives in Oslo"]


def test_deleting_a_user_drops_their_queued_turns(mem: tuple[Live, ScriptedMemory]) -> None:
    live, memory = mem
    with live.admin() as c:
        c.post("/v1/users", json={"user_id": "zoe"})
    memory.gate, memory.entered = threading.Event(), threading.Event()
    _say(live, "bob", "I live in Nice")  # the worker blocks inside this turn
    assert memory.entered.wait(10)
    _say(live, "zoe", "I live in Porto")  # queued behind it
    deleted: list[int] = []

    def delete() -> None:
        with live.admin() as c:
            deleted.append(c.delete("/v1/users/zoe").status_code)

    deleter = threading.Thread(target=delete)
    deleter.start()
    memory.gate.set()
    deleter.join(30)
    live.app.state.memory_queue.join()
    memory.gate = None
    assert deleted == [200]
    assert not live.store.has_user(user_id="zoe") and live.store.get_facts(user_id="zoe") == []


def test_memory_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    monkeypatch.setattr("tailorlm.serve.app._memory_factory", lambda store, gen: built.append(1))
    with live_server(tmp_path, memory=False) as server:
        assert server.app.state.memory_queue is None
        _say(server, "alice", "I live in Paris")
    assert built == []


def test_the_real_memory_package_plugs_in(tmp_path: Path) -> None:
    pytest.importorskip("tailorlm.memory", reason="tailorlm.memory is not installed yet")
    with live_server(tmp_path, memory=True) as server:
        _say(server, "alice", "I live in Paris and I play the cello.")
        server.app.state.memory_queue.join()
        worker = server.app.state.service.memory
        assert worker.failed == 0 and worker.processed == 1, worker.last_error
        with server.as_user("alice") as c:
            facts = c.get("/v1/users/alice/facts", params={"include_invalid": True}).json()["data"]
        assert all(f["user_id"] == "alice" for f in facts)
