"""The one library call (`personalize.generate`) and the one hand-off to a generator.

A recording generator stands in for the model: these tests check what reaches it
(messages, adapter, soft prompt), which is pure plumbing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tailorlm.data import Document, Store
from tailorlm.errors import ConfigError
from tailorlm.models.base import GenerationConfig
from tailorlm.models.inputs import ModelInput, generate_inputs, input_kwargs, score_inputs
from tailorlm.personalize import Query, generate, parse_method_spec, personalize_input
from tailorlm.tasks import get_task


class Recorder:
    """Answers 'ok' and remembers each call's keyword arguments."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def generate(self, batch: Sequence[Any], *, config: GenerationConfig | None = None, **kw: Any) -> list[str]:
        self.calls.append({"batch": list(batch), **kw})
        return ["ok"] * len(batch)

    def score_choices(self, batch: Sequence[Any], choices: Sequence[str], **kw: Any) -> list[list[float]]:
        self.calls.append({"batch": list(batch), "choices": list(choices), **kw})
        return [[0.0] * len(choices) for _ in batch]


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    s.add([Document(user_id="u1", doc_id="d1", text="I love bright nylon strings on my ukulele", timestamp=1)])
    s.add([Document(user_id="u2", doc_id="d2", text="SECRET-U2 heavy metal picks", timestamp=1)])
    return s


def test_generate_personalizes_for_the_named_user_only(store: Store) -> None:
    out = generate(store, Recorder(), "rag-bm25", user_id="u1", query="which strings?")
    assert out.text == "ok"
    assert out.input.record.scope == "user" and [r["id"] for r in out.input.record.retrieved] == ["doc:d1"]
    assert "nylon strings" in out.input.messages[0]["content"]
    assert "SECRET-U2" not in out.input.messages[0]["content"]


def test_a_chat_keeps_the_clients_turns_and_gets_the_context_in_its_system_message(store: Store) -> None:
    rag = parse_method_spec("rag-bm25").fit(store, [])
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "ukulele strings?"},
    ]
    pers = personalize_input(rag, "u1", messages=chat)
    assert pers.messages[0]["role"] == "system"
    assert pers.messages[0]["content"].startswith("You are terse.\n\nWhat follows is quoted data about the user")
    assert "nylon strings" in pers.messages[0]["content"]
    assert pers.messages[1:] == chat[1:]
    # without a client system message, the task's system text carries the context
    bare = personalize_input(rag, "u1", messages=chat[1:])
    assert bare.messages[0]["content"] == get_task("chat").system + pers.context


def test_context_is_kept_apart_from_the_rendered_system_text(store: Store) -> None:
    pers = parse_method_spec("rag-bm25").fit(store, []).personalize("u1", Query("strings", task="chat"))
    assert pers.context and pers.messages[0]["content"] == get_task("chat").system + pers.context
    empty = parse_method_spec("identity").fit(store, []).personalize("u1", Query("strings", task="chat"))
    assert empty.context == "" and empty.messages[0]["content"] == get_task("chat").system


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"query": "x", "messages": [{"role": "user", "content": "x"}]},
        {"messages": [{"role": "user", "content": " "}]},
    ],
    ids=["neither", "both", "blank-user-turn"],
)
def test_personalize_input_refuses_ambiguous_input(store: Store, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        personalize_input(parse_method_spec("identity").fit(store, []), "u1", **kwargs)


def test_the_hand_off_passes_adapters_and_soft_prompts_per_row() -> None:
    rec = Recorder()
    rows = [
        ModelInput([{"role": "user", "content": "a"}], adapter="ad-1", soft_prompt="SP"),
        ModelInput([{"role": "user", "content": "b"}]),
    ]
    assert generate_inputs(rec, rows) == ["ok", "ok"]
    assert rec.calls[-1]["adapter"] == ["ad-1", None] and rec.calls[-1]["soft_prompt"] == ["SP", None]
    # nothing personalized: neither argument is sent (generators without them still work)
    generate_inputs(rec, [ModelInput([{"role": "user", "content": "c"}])])
    assert "adapter" not in rec.calls[-1] and "soft_prompt" not in rec.calls[-1]
    assert generate_inputs(rec, []) == []


def test_a_calibration_row_shares_its_inputs_personalization() -> None:
    rec = Recorder()
    row = ModelInput([{"role": "user", "content": "rate"}], adapter="ad", soft_prompt="SP")
    score_inputs(rec, [row], ["1", "2"], extra=[[{"role": "user", "content": "N/A"}]])
    assert rec.calls[-1]["adapter"] == ["ad", "ad"] and rec.calls[-1]["soft_prompt"] == ["SP", "SP"]
    assert input_kwargs([row], repeat=3)["adapter"] == ["ad"] * 3
    with pytest.raises(ValueError, match="one input"):
        score_inputs(rec, [row, row], ["1"])
