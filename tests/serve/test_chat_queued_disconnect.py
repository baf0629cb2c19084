"""A streaming chat whose client leaves while the request still waits for a batch slot is
cancelled there, not prefilled and decoded for nobody."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from serve_harness import live_server, wait_for

from tailorlm.testing import FakeGenerator

LONG = " ".join(f"w{i}" for i in range(400))  # the fake answers with the message, one word per step


def test_a_streaming_chat_abandoned_in_the_queue_leaves_it(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False, max_batch_size=1) as server:
        sched = server.app.state.service.scheduler
        chat = {"model": "fake", "messages": [{"role": "user", "content": LONG}], "max_tokens": 400, "stream": True}
        with server.admin() as c, c.stream("POST", "/v1/chat/completions", json=chat) as r:
            lines = r.iter_lines()  # kept: closing this generator would close the response
            next(lines)  # the one batch slot is taken for the next ~4 s
            outcome: list[str] = []

            def give_up() -> None:
                short = {**chat, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
                with server.as_user("alice") as waiting:
                    try:
                        with waiting.stream("POST", "/v1/chat/completions", json=short, timeout=1.0) as w:
                            w.read()
                        outcome.append("answered")
                    except httpx.ReadTimeout:
                        outcome.append("gave up")

            waiter = threading.Thread(target=give_up)
            waiter.start()
            wait_for(lambda: sched.stats().queued == 1, "the second chat to queue")
            waiter.join(30)
            assert outcome == ["gave up"]
            # It leaves the queue now, not when the first chat's ~4 s of decoding free the slot.
            wait_for(lambda: sched.stats().queued == 0, "the abandoned chat to leave the queue", timeout=1.5)
            assert sched.stats().running == 1  # the first chat still decodes, alone
