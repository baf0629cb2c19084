"""Pure logic of the model layer: message/config validation, FakeGenerator, factories."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tailorlm.models import (
    ChatMessage,
    Embedder,
    GenerationConfig,
    Generator,
    OpenAICompatibleGenerator,
    build_generator,
    chat,
    normalize_messages,
)
from tailorlm.models.base import cut_at_stop, resolve_adapters
from tailorlm.settings import load_settings
from tailorlm.testing import FakeGenerator


def test_normalize_messages_accepts_dataclasses_and_dicts() -> None:
    msgs = [ChatMessage("system", "be brief"), {"role": "user", "content": "hi"}]
    assert normalize_messages(msgs) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "empty"),
        ("hello", "sequence of chat messages"),
        ([{"role": "user"}], r"messages\[0\]: needs 'role' and 'content'"),
        ([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}], r"\[1\]: role 'bot'"),
        ([{"role": "user", "content": 3}], r"\[0\]: content must be str"),
        ([42], r"\[0\]: expected a ChatMessage"),
    ],
)
def test_normalize_messages_names_the_problem(messages: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        normalize_messages(messages)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": ("",)}, "stop"),
        ({"seed": -1}, "seed"),
    ],
)
def test_generation_config_validates(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GenerationConfig(**kwargs)


def test_generation_config_normalizes_stop() -> None:
    assert GenerationConfig(stop="###").stop == ("###",)  # type: ignore[arg-type]
    assert GenerationConfig(stop=["a", "b"]).stop == ("a", "b")  # type: ignore[arg-type]
    assert GenerationConfig().greedy and not GenerationConfig(temperature=0.7).greedy


def test_cut_at_stop_uses_the_earliest_stop() -> None:
    assert cut_at_stop("one two three", ["three", "two"]) == "one "
    assert cut_at_stop("nothing here", ["x"]) == "nothing here"


def test_resolve_adapters() -> None:
    assert resolve_adapters(None, 2) == [None, None]
    assert resolve_adapters("alice", 2) == ["alice", "alice"]
    assert resolve_adapters(["alice", None], 2) == ["alice", None]
    with pytest.raises(ValueError, match="1 entries but the batch has 2"):
        resolve_adapters(["alice"], 2)
    with pytest.raises(ValueError, match=r"adapter\[0\]"):
        resolve_adapters([""], 1)


def test_fake_generator_echoes_records_and_routes_adapters() -> None:
    fake = FakeGenerator(adapters=["alice"])
    assert isinstance(fake, Generator) and not isinstance(fake, Embedder)
    conv = [{"role": "user", "content": "one two three four"}]
    assert chat(fake, conv) == "echo: one two three four"
    assert chat(fake, conv, config=GenerationConfig(max_new_tokens=3)) == "echo: one two"
    assert chat(fake, conv, config=GenerationConfig(stop=("three",))) == "echo: one two"
    assert fake.generate([conv, conv], adapter=["alice", None]) == [
        "[alice] echo: one two three four",
        "echo: one two three four",
    ]
    assert fake.calls[-1].adapters == ["alice", None]
    assert len(fake.calls) == 4
    with pytest.raises(ValueError, match="'bob'"):
        fake.generate([conv], adapter="bob")


def test_build_generator_openai_needs_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILORLM_CONFIG", "/nonexistent/config.toml")
    with pytest.raises(ValueError, match=r"generator\.base_url.*TAILORLM_GENERATOR__BASE_URL"):
        build_generator(load_settings(generator={"backend": "openai"}))
    gen = build_generator(
        load_settings(generator={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"})
    )
    assert isinstance(gen, OpenAICompatibleGenerator) and isinstance(gen, Generator)
    assert (gen.name, gen.base_url) == ("m", "http://127.0.0.1:9/v1")


def test_importing_models_stays_light() -> None:
    code = (
        "import sys, tailorlm.models, tailorlm.testing; "
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'httpx', 'peft', 'fastapi'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
