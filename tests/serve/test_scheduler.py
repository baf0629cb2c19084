"""The scheduler behind the chat route, with the fake generator's decode batch (one word per step).

Real sockets, the real app; what the model would compute is the fake's, so these tests are
about admission, joining and leaving the batch, cancellation, bounds and time limits. The
real model's batch is tested in ``tests/models/test_continuous.py``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_harness import Live, live_server, wait_for

from tailorlm.models.continuous import TextStream
from tailorlm.testing import FakeGenerator

LONG = " ".join(f"w{i}" for i in range(400))  # the fake answers with the message, one word per step


def _scheduler(server: Live) -> Any:
    return server.app.state.service.scheduler


def _chat(content: str, **kw: Any) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": content}], **kw}


def _stream_text(lines: list[str]) -> str:
    out = ""
    for line in lines:
        if line.startswith("data: {"):
            choices = json.loads(line[6:]).get("choices") or [{}]
            out += choices[0].get("delta", {}).get("content") or ""
    return out


# -- the text stream ------------------------------------------------------------------------------


def test_text_stream_concatenates_to_the_stripped_answer_and_holds_back_stop_prefixes() -> None:
    stream = TextStream(stop=("END",))
    pieces = []
    for text in (" Hello", " Hello wor", " Hello world E", " Hello world EN", " Hello world ENDED"):
        delta, stopped = stream.update(text)
        pieces.append(delta)
    assert stopped
    assert pieces == ["Hello", " wor", "ld", "", ""]  # " E" and " EN" may start the stop string: held
    assert "".join(pieces) == "Hello world"

    stream = TextStream(stop=("END",))
    assert stream.update("Go E") == ("Go", False)
    assert stream.update("Go Eagles ", final=True) == (" Eagles", False)  # it was not the stop after all


def test_text_stream_holds_a_partial_character() -> None:
    stream = TextStream()
    assert stream.update("caf\ufffd") == ("caf", False)
    assert stream.update("café!", final=True) == ("é!", False)


# -- batching ----------------------------------------------------------------------------------------


def test_concurrent_streaming_and_plain_requests_share_decode_steps(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.005)
    with live_server(tmp_path, generator=fake, memory=False) as server:
        results: dict[int, str] = {}

        def ask(i: int) -> None:
            words = " ".join(f"r{i}w{j}" for j in range(30))
            with server.admin() as c:
                if i % 2:
                    with c.stream("POST", "/v1/chat/completions", json=_chat(words, stream=True)) as r:
                        assert r.status_code == 200
                        results[i] = _stream_text(list(r.iter_lines()))
                else:
                    results[i] = c.post("/v1/chat/completions", json=_chat(words)).json()["choices"][0]["message"][
                        "content"
                    ]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        sizes = _scheduler(server)._batch.sizes
    assert results == {i: "echo: " + " ".join(f"r{i}w{j}" for j in range(30)) for i in range(4)}
    assert max(sizes) >= 2  # rows decoded together:
    assert len(sizes) < 100  # one at a time, 4 answers of 31 words would take 120 steps


@pytest.mark.parametrize("mode", ["apart", "by length", "packed"])
def test_a_burst_is_prefilled_apart_by_length_or_packed_in_one_pass(mode: str) -> None:
    """With ``prefill_together``, requests waiting together are prefilled in groups of similar
    length (a 20x longer prompt is not padded onto the others), or all in one pass when the
    batch packs them (no padding to bound); every answer is its own."""
    from tailorlm.models.base import GenerationConfig
    from tailorlm.models.inputs import ModelInput
    from tailorlm.serve.engine import LockedGenerator
    from tailorlm.serve.scheduler import Scheduler

    gen = LockedGenerator(FakeGenerator())
    scheduler = Scheduler(gen, prefill_together=mode != "apart", prefill_tokens=10_000)
    if mode == "packed":
        scheduler._batch.packs = lambda rows: True  # type: ignore[union-attr]
    texts = [f"burst {i} " + "word " * 10 for i in range(5)] + ["long " * 200]
    try:
        # Hold the scheduler's condition (reentrant, so submit still works here): the loop cannot
        # admit any request until all six wait. Holding the model lock instead let the loop admit
        # the first few and then block on the lock, splitting the burst (a flaky test in CI).
        with scheduler._cond:
            tickets = [
                scheduler.submit(ModelInput([{"role": "user", "content": t}]), GenerationConfig(max_new_tokens=3),
                                 prompt_tokens=len(t.split()) + 10)
                for t in texts
            ]  # fmt: skip
        answers = [t.wait() for t in tickets]
    finally:
        scheduler.close()
    assert answers == ["echo: " + " ".join(t.split()[:2]) for t in texts]
    prefills = scheduler._batch.prefills
    if mode == "by length":
        assert sum(prefills) == len(texts) and max(prefills) >= 4 and prefills.count(1) >= 1  # the long one alone
    else:
        assert prefills == ([len(texts)] if mode == "packed" else [1] * len(texts))


@pytest.mark.parametrize("first", [True, False])
def test_prefill_first_admits_what_arrived_during_a_prefill_before_the_next_step(first: bool) -> None:
    """A request that queues while another is being prefilled joins before the first decode
    step with ``prefill_first`` (that step decodes both), and after it without."""
    from tailorlm.models.base import GenerationConfig
    from tailorlm.models.inputs import ModelInput
    from tailorlm.serve.engine import LockedGenerator
    from tailorlm.serve.scheduler import Scheduler

    gen = LockedGenerator(FakeGenerator())
    scheduler = Scheduler(gen, prefill_first=first)
    ask = lambda text: scheduler.submit(  # noqa: E731
        ModelInput([{"role": "user", "content": text}]), GenerationConfig(max_new_tokens=4)
    )
    try:
        with gen.lock:  # the loop admits the first request, then waits here to prefill it
            first_ticket = ask("one two three")
            wait_for(lambda: scheduler.stats().running == 1, "the first request to be admitted")
            second = ask("four five six")
            wait_for(lambda: scheduler.stats().queued == 1, "the second request to queue")
        assert [first_ticket.wait(), second.wait()] == ["echo: one two three", "echo: four five six"]
    finally:
        scheduler.close()
    assert scheduler._batch.sizes[0] == (2 if first else 1)


@pytest.mark.parametrize("interrupt", [False, True])
def test_prefill_first_still_decodes_the_running_rows_between_runs_of_prefills(interrupt: bool) -> None:
    """Rows that finish at their first token leave the batch at once, so a queue of them never
    fills it: prefill_first must still step the running row after at most max_batch_size
    extra passes. Requests already waiting when that step begins do not make it give way."""
    from tailorlm.models.base import GenerationConfig
    from tailorlm.models.inputs import ModelInput
    from tailorlm.serve.engine import LockedGenerator
    from tailorlm.serve.scheduler import Scheduler

    gen = LockedGenerator(FakeGenerator())
    scheduler = Scheduler(gen, prefill_first=True, max_batch_size=2, prefill_tokens=1, interrupt_steps=interrupt)
    log: list[str] = []
    batch = scheduler._batch
    for name in ("add", "add_many", "step"):
        real = getattr(batch, name)
        setattr(batch, name, lambda *a, _real=real, _name=name, **k: (log.append(_name), _real(*a, **k))[1])
    ask = lambda text, n: scheduler.submit(  # noqa: E731
        ModelInput([{"role": "user", "content": text}]), GenerationConfig(max_new_tokens=n), prompt_tokens=1
    )
    try:
        with gen.lock:
            long = ask(" ".join(f"w{i}" for i in range(30)), 30)
            wait_for(lambda: scheduler.stats().running == 1, "the long request to be admitted")
            short = [ask(f"s{i}", 1) for i in range(8)]  # each answers "echo:" at its prefill
            wait_for(lambda: scheduler.stats().queued == 8, "the short requests to queue")
        assert [t.wait() for t in short] == ["echo:"] * 8
        assert long.wait().startswith("echo: w0 w1")
    finally:
        scheduler.close()
    runs = [len(r) for r in "".join("p" if e != "step" else " " for e in log).split()]
    assert sum(runs) == 9 and max(runs) <= scheduler.max_batch_size + 1, log
    assert batch.gave_way == []


@pytest.mark.parametrize("interrupt", [True, False])
def test_a_step_gives_way_to_a_request_that_arrives_during_it(interrupt: bool) -> None:
    """With ``interrupt_steps``, a request that queues while a step runs is prefilled before
    that step finishes (the step is abandoned and redone with both rows); without, it waits
    for the step. Answers are the same either way."""
    from tailorlm.models.base import GenerationConfig
    from tailorlm.models.inputs import ModelInput
    from tailorlm.serve.engine import LockedGenerator
    from tailorlm.serve.scheduler import Scheduler

    gen = LockedGenerator(FakeGenerator())
    scheduler = Scheduler(gen, prefill_first=True, interrupt_steps=interrupt)
    batch = scheduler._batch
    inside, release = threading.Event(), threading.Event()
    real_step = batch.step

    def step(interrupt: Any = None) -> list[Any]:
        if len(batch.sizes) == 2 and not inside.is_set():  # the third step: hold it until the arrival
            inside.set()
            assert release.wait(10)
        return real_step(interrupt=interrupt)

    batch.step = step
    ask = lambda text: scheduler.submit(  # noqa: E731
        ModelInput([{"role": "user", "content": text}]), GenerationConfig(max_new_tokens=8)
    )
    try:
        first = ask(" ".join(f"a{i}" for i in range(7)))
        assert inside.wait(10)
        second = ask(" ".join(f"b{i}" for i in range(7)))
        wait_for(lambda: scheduler.stats().queued == 1, "the second request to queue")
        release.set()
        assert first.wait() == "echo: " + " ".join(f"a{i}" for i in range(7))
        assert second.wait() == "echo: " + " ".join(f"b{i}" for i in range(7))
    finally:
        release.set()
        scheduler.close()
    if interrupt:
        assert batch.gave_way == [2] and batch.sizes[:3] == [1, 1, 2]  # the held step was redone with both
    else:
        assert batch.gave_way == [] and batch.sizes[:3] == [1, 1, 1]


def test_arrivals_cannot_stall_the_running_rows_past_max_stall() -> None:
    """Steps give way only while the running rows have had a token within ``max_stall_s``:
    here every check says a request arrived, and the answer still completes."""
    from tailorlm.models.base import GenerationConfig
    from tailorlm.models.inputs import ModelInput
    from tailorlm.serve.engine import LockedGenerator
    from tailorlm.serve.scheduler import Scheduler

    gen = LockedGenerator(FakeGenerator())
    scheduler = Scheduler(gen, interrupt_steps=True, max_stall_s=0.02)
    scheduler._arrived = lambda submitted_before: True  # type: ignore[method-assign]
    words = " ".join(f"w{i}" for i in range(12))
    try:
        ticket = scheduler.submit(ModelInput([{"role": "user", "content": words}]), GenerationConfig(max_new_tokens=20))
        assert ticket.wait() == "echo: " + words
    finally:
        scheduler.close()
    batch = scheduler._batch
    assert len(batch.sizes) == 12 and len(batch.gave_way) >= 12  # every step gave way until the stall limit


def _timing(header: str) -> dict[str, float]:
    return {name: float(dur.removeprefix("dur=")) for name, dur in (p.strip().split(";") for p in header.split(","))}


def test_server_timing_says_where_the_time_to_first_token_went(tmp_path: Path) -> None:
    """Both routes name their phases; a request queued behind a full batch shows its wait there."""
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False, max_batch_size=1) as server:
        sched = _scheduler(server)
        with server.admin() as c, c.stream("POST", "/v1/chat/completions", json=_chat("a b c d e", stream=True)) as r:
            streamed = _timing(r.headers["server-timing"])
            r.read()
        assert set(streamed) == {"personalize", "queue", "wait", "prefill"}
        assert all(ms >= 0 for ms in streamed.values())
        with (
            server.admin() as c,
            c.stream("POST", "/v1/chat/completions", json=_chat(LONG, stream=True, max_tokens=400)) as r,
        ):
            lines = r.iter_lines()  # kept: a dropped iterator closes the stream (a disconnect)
            next(lines)  # the long answer holds the only slot
            with server.admin() as c2:
                queued = threading.Thread(target=lambda: out.append(c2.post("/v1/chat/completions", json=_chat("hi"))))
                out: list[httpx.Response] = []
                queued.start()
                wait_for(lambda: sched.stats().queued == 1, "the second request to queue")
                seen_queued = time.monotonic()
                for _ in range(5):  # five more decode steps of the long answer while it waits
                    next(lines)
                held = (time.monotonic() - seen_queued) * 1000
                r.close()  # the long one leaves; the queued one runs
                queued.join(timeout=10)
        plain = _timing(out[0].headers["server-timing"])
        assert out[0].json()["choices"][0]["message"]["content"] == "echo: hi"
        assert set(plain) == {"personalize", "queue", "wait", "prefill"}
        assert plain["queue"] >= held > 0  # queued from before it was seen queued until the slot freed


def test_a_disconnecting_stream_cancels_its_row(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False) as server:
        sched = _scheduler(server)
        with server.admin() as c, c.stream("POST", "/v1/chat/completions", json=_chat(LONG, stream=True)) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")  # the role chunk
            next(lines)
            assert sched.stats().running == 1
        # the client is gone: the row leaves the batch long before its 400 words are decoded
        wait_for(lambda: sched.stats().running == 0, "the cancelled row to leave the batch")
        steps = len(sched._batch.sizes)
        assert steps < 200
        with server.admin() as c:  # and the server goes on serving
            assert (
                c.post("/v1/chat/completions", json=_chat("still there?")).json()["choices"][0]["message"]["content"]
                == "echo: still there?"
            )


def test_a_disconnecting_plain_request_cancels_its_row(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False) as server:
        sched = _scheduler(server)
        with server.admin() as c, pytest.raises(httpx.ReadTimeout):
            c.post("/v1/chat/completions", json=_chat(LONG, max_tokens=400), timeout=0.5)
        wait_for(lambda: sched.stats().running == 0, "the cancelled row to leave the batch")
        assert len(sched._batch.sizes) < 200


# -- admission ----------------------------------------------------------------------------------------


def test_per_key_concurrency_cap_answers_429(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False, max_concurrent_per_key=1) as server:
        with server.as_user("alice") as c, c.stream("POST", "/v1/chat/completions", json=_chat(LONG, stream=True)) as r:
            lines = r.iter_lines()  # kept: closing this generator would close the response
            next(lines)
            second = server.as_user("alice").post("/v1/chat/completions", json=_chat("me again"))
            other = server.as_user("bob").post("/v1/chat/completions", json=_chat("hello"))
        assert second.status_code == 429
        error = second.json()["error"]
        assert error["code"] == "too_many_concurrent_requests" and "at most 1" in error["message"]
        assert other.status_code == 200  # the cap is per key


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    settings = {"max_batch_size": 1, "max_queue": 1}
    with live_server(tmp_path, generator=fake, memory=False, **settings) as server:
        sched = _scheduler(server)
        queued: list[int] = []
        with server.admin() as c, c.stream("POST", "/v1/chat/completions", json=_chat(LONG, stream=True)) as r:
            lines = r.iter_lines()  # kept: closing this generator would close the response
            next(lines)
            waiter = threading.Thread(
                target=lambda: queued.append(server.admin().post("/v1/chat/completions", json=_chat("b")).status_code)
            )
            waiter.start()
            wait_for(lambda: sched.stats().queued == 1, "the second request to queue")
            third = server.admin().post("/v1/chat/completions", json=_chat("c"))
        waiter.join(30)
    assert third.status_code == 429 and third.json()["error"]["code"] == "server_busy"
    assert int(third.headers["Retry-After"]) >= 1
    assert queued == [200]  # the queued request ran once the first left


# -- bounds ------------------------------------------------------------------------------------------------


def test_over_long_prompt_is_refused_with_both_numbers_before_the_model(tmp_path: Path) -> None:
    fake = FakeGenerator()
    with live_server(tmp_path, generator=fake, memory=False, max_prompt_tokens=50) as server, server.admin() as c:
        r = c.post("/v1/chat/completions", json=_chat(" ".join(["word"] * 80)))
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
        assert "80 tokens" in error["message"] and "limit of 50 tokens" in error["message"]
        start = time.perf_counter()
        huge = c.post("/v1/chat/completions", json=_chat("x" * 900_000))
        assert huge.status_code == 400 and "at least" in huge.json()["error"]["message"]
        assert time.perf_counter() - start < 1.0
        assert fake.calls == []  # the model never saw either


def test_max_tokens_beyond_the_bound_is_refused(tmp_path: Path) -> None:
    with live_server(tmp_path, memory=False, max_tokens=64) as server, server.admin() as c:
        r = c.post("/v1/chat/completions", json=_chat("hi", max_tokens=65))
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
        assert "at most 64" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", json=_chat("hi", max_completion_tokens=65))
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_completion_tokens"
        assert c.post("/v1/chat/completions", json=_chat("hi", max_tokens=64)).status_code == 200


def test_personalized_context_is_trimmed_to_fit_before_refusing(tmp_path: Path) -> None:
    with live_server(tmp_path, memory=False) as server, server.as_user("alice") as c:
        body = {"model": "tailorlm/rag-bm25", "messages": [{"role": "user", "content": "Which strings for my guitar?"}]}
        full = c.post("/v1/chat/completions", json=body).json()
        used, kept = full["usage"]["prompt_tokens"], len(full["tailorlm"]["retrieved"])
        assert kept >= 2
        server.app.state.service.engine.max_prompt_tokens = used - 1
        trimmed = c.post("/v1/chat/completions", json=body)
        assert trimmed.status_code == 200
        assert trimmed.json()["usage"]["prompt_tokens"] <= used - 1
        assert 1 <= len(trimmed.json()["tailorlm"]["retrieved"]) < kept
        assert trimmed.json()["tailorlm"]["dropped_items"] > full["tailorlm"]["dropped_items"]
        server.app.state.service.engine.max_prompt_tokens = 4  # not even the message fits
        assert c.post("/v1/chat/completions", json=body).status_code == 400


def test_a_request_past_the_time_limit_is_cancelled_with_504(tmp_path: Path) -> None:
    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False, request_timeout_s=0.3) as server, server.admin() as c:
        r = c.post("/v1/chat/completions", json=_chat(LONG, max_tokens=400))
        assert r.status_code == 504 and "limit of 0.3 s" in r.json()["error"]["message"]
        assert _scheduler(server).stats().running == 0
        assert c.post("/v1/chat/completions", json=_chat("quick")).status_code == 200


def test_the_services_own_model_calls_join_the_batch_instead_of_holding_the_model(tmp_path: Path) -> None:
    from tailorlm.models.base import GenerationConfig

    fake = FakeGenerator(step_seconds=0.01)
    with live_server(tmp_path, generator=fake, memory=False) as server:
        sched = _scheduler(server)
        locked = server.app.state.service.engine.generator  # what memory extraction and methods call
        config = GenerationConfig(max_new_tokens=300)
        background: list[list[str]] = []
        worker = threading.Thread(
            target=lambda: background.append(locked.generate([[{"role": "user", "content": LONG}]], config=config))
        )
        worker.start()
        wait_for(lambda: sched.stats().running == 1, "the background generation to start")
        with server.admin() as c:
            r = c.post("/v1/chat/completions", json=_chat("quick one"))
        assert r.json()["choices"][0]["message"]["content"] == "echo: quick one"
        assert sched.stats().running == 1  # answered while the 300-word background answer still runs
        worker.join(30)
    assert background == [[fake._answer([{"role": "user", "content": LONG}], config, None)]]
