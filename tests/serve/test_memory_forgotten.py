"""Through the HTTP API, with the real memory: a forgotten fact does not come back when the
client resends the conversation (as OpenAI clients do), and does when the user says it again."""

from __future__ import annotations

from pathlib import Path

from serve_harness import live_server

CHAT = "/v1/chat/completions"


def test_a_forgotten_fact_stays_forgotten_when_the_client_resends_history(tmp_path: Path) -> None:
    with live_server(tmp_path, memory=True) as server, server.as_user("alice") as c:
        said = {"role": "user", "content": "I live in Berlin."}

        def chat(messages: list[dict[str, str]]) -> str:
            r = c.post(CHAT, json={"model": "fake", "messages": messages})
            assert r.status_code == 200, r.text
            server.app.state.memory_queue.join()  # the background worker has caught up
            return r.json()["choices"][0]["message"]["content"]

        def berlin() -> list[dict]:
            return [f for f in c.get("/v1/users/alice/facts").json()["data"] if "Berlin" in f["text"]]

        answer = chat([said])
        (fact,) = berlin()
        assert c.delete(f"/v1/users/alice/facts/{fact['fact_id']}").status_code == 200
        history = [said, {"role": "assistant", "content": answer}, {"role": "user", "content": "Any tips for winter?"}]
        chat(history)
        assert berlin() == []  # the resent turn was not read again
        chat([*history, {"role": "assistant", "content": "Wear layers."}, said])
        assert [f["text"] for f in berlin()] == [fact["text"]]  # said again, in a new turn: remembered
