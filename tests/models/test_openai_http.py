"""OpenAICompatibleGenerator over real HTTP against the test server in tailorlm.testing."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tailorlm.models import (
    BackendError,
    GenerationConfig,
    Messages,
    OpenAICompatibleGenerator,
    TransformersGenerator,
    chat,
)
from tailorlm.testing import FakeGenerator, openai_test_server

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
COLORS = [{"role": "user", "content": "Name three colors."}]
SHORT = GenerationConfig(max_new_tokens=24)


@pytest.fixture(scope="module")
def smollm_url(smollm: TransformersGenerator) -> Iterator[str]:
    with openai_test_server(smollm) as url:
        yield url


@pytest.mark.model
def test_http_answers_equal_local_greedy_answers(smollm: TransformersGenerator, smollm_url: str) -> None:
    batch = [CAPITAL, COLORS, CAPITAL]
    with OpenAICompatibleGenerator(smollm_url, model=smollm.name, max_concurrency=3) as remote:
        assert remote.name == smollm.name
        assert remote.generate(batch, config=SHORT) == smollm.generate(batch, config=SHORT)


@pytest.mark.model
def test_official_openai_client_works(smollm: TransformersGenerator, smollm_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=smollm_url, api_key="unused", max_retries=0)
    response = client.chat.completions.create(
        model=smollm.name,
        messages=CAPITAL,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
    )
    assert response.choices[0].message.content == chat(smollm, CAPITAL, config=SHORT)
    assert response.usage is not None
    assert response.usage.prompt_tokens == smollm.count_tokens(CAPITAL)
    assert 0 < response.usage.completion_tokens <= 24
    assert smollm.name in [m.id for m in client.models.list()]


def test_request_carries_decoding_settings_and_adapter_as_model() -> None:
    fake = FakeGenerator(name="base-model", adapters=["alice"])
    requests: list[dict[str, Any]] = []
    config = GenerationConfig(max_new_tokens=7, temperature=0.5, top_p=0.9, stop=("x",), seed=3)
    with (
        openai_test_server(fake, requests=requests) as url,
        OpenAICompatibleGenerator(url, model="base-model") as remote,
    ):
        answers = remote.generate([COLORS, COLORS], config=config, adapter=["alice", None])
    assert answers == ["[alice] echo: Name three colors.", "echo: Name three colors."]
    assert sorted(r["model"] for r in requests) == ["alice", "base-model"]
    body = requests[0]
    assert body["messages"] == COLORS
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (7, 0.5, 0.9)
    assert (body["stop"], body["seed"]) == (["x"], 3)
    assert sorted(call.adapters[0] or "<base>" for call in fake.calls) == ["<base>", "alice"]


def test_batch_keeps_order_under_concurrency() -> None:
    fake = FakeGenerator(prefix="")
    batch = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
    with (
        openai_test_server(fake) as url,
        OpenAICompatibleGenerator(url, model="fake", max_concurrency=4) as remote,
    ):
        assert remote.generate(batch) == [f"q{i}" for i in range(20)]


class _Failing:
    """A generator failing with ``exc`` for the first ``times`` calls, then echoing."""

    name = "failing"

    def __init__(self, exc: Exception, times: int = 10**9) -> None:
        self.exc, self.times, self.calls = exc, times, 0

    def generate(self, batch: Sequence[Messages], **kw: Any) -> list[str]:
        self.calls += 1
        if self.calls <= self.times:
            raise self.exc
        return FakeGenerator().generate(batch, **kw)


@pytest.mark.parametrize(
    ("exc", "status", "text"),
    [
        (RuntimeError("boom"), 500, "RuntimeError: boom"),
        (ValueError("bad prompt"), 400, "bad prompt"),
        (BackendError("upstream down", status_code=502), 502, "upstream down"),
    ],
)
def test_server_errors_become_backend_errors(exc: Exception, status: int, text: str) -> None:
    failing = _Failing(exc)
    with (
        openai_test_server(failing) as url,
        OpenAICompatibleGenerator(url, model="failing") as remote,
        pytest.raises(BackendError, match=str(status)) as info,
    ):
        chat(remote, COLORS)
    assert text in str(info.value)
    assert info.value.status_code == status
    assert failing.calls == 1  # not retried


def test_503_and_429_are_retried_with_backoff() -> None:
    flaky = _Failing(BackendError("busy", status_code=503), times=2)
    with (
        openai_test_server(flaky) as url,
        OpenAICompatibleGenerator(url, model="failing", backoff_s=0.01) as remote,
    ):
        assert chat(remote, COLORS) == "echo: Name three colors."
    assert flaky.calls == 3

    overloaded = _Failing(BackendError("slow down", status_code=429))
    with (
        openai_test_server(overloaded) as url,
        OpenAICompatibleGenerator(url, model="failing", backoff_s=0.01, max_retries=2) as remote,
        pytest.raises(BackendError, match=r"429.*slow down"),
    ):
        chat(remote, COLORS)
    assert overloaded.calls == 3  # first try + 2 retries


def test_connection_refused_names_the_server() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with (
        OpenAICompatibleGenerator(url, model="m") as remote,
        pytest.raises(BackendError, match=f"cannot reach {url}"),
    ):
        chat(remote, COLORS)


def test_server_stops_on_exit() -> None:
    with openai_test_server(FakeGenerator()) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        socket.create_connection(("127.0.0.1", port), 1).close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()
