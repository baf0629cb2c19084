"""The chat route on the real model: concurrent streaming and plain requests through the
scheduler give the greedy answers the model gives one at a time (fp32)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from serve_harness import live_server

from tailorlm.models import TransformersGenerator
from tailorlm.models.base import GenerationConfig

QUESTIONS = ["Name a musical instrument.", "What is a capo for?", "Say hello in French."]


def test_concurrent_streaming_and_plain_chats_match_one_at_a_time(
    smollm: TransformersGenerator, tmp_path: Path
) -> None:
    alone = [
        smollm.generate([[{"role": "user", "content": q}]], config=GenerationConfig(max_new_tokens=12))[0]
        for q in QUESTIONS
    ]
    answers: dict[int, str] = {}
    with live_server(tmp_path, generator=smollm, memory=False) as server:

        def ask(i: int) -> None:
            body = {"model": smollm.name, "messages": [{"role": "user", "content": QUESTIONS[i]}], "max_tokens": 12,
                    "temperature": 0, "stream": i == 1}  # fmt: skip
            with server.admin() as c:
                if i == 1:
                    with c.stream("POST", "/v1/chat/completions", json=body) as r:
                        text = ""
                        for line in r.iter_lines():
                            if line.startswith("data: {"):
                                text += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                        answers[i] = text
                else:
                    answers[i] = c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    assert [answers[i] for i in range(len(QUESTIONS))] == alone
