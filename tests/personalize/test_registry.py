"""The method registry: one registration call per technique, read by every caller."""

from __future__ import annotations

import pytest

from tailorlm.errors import ConfigError
from tailorlm.personalize import REGISTRY, get_trainer, method_names, needs_of, trainable_methods
from tailorlm.personalize.registry import resolve_alias


def test_every_technique_folder_is_registered_once() -> None:
    assert {"identity", "rag", "profile", "persona", "lora", "dpo", "softprompt", "soups"} <= set(REGISTRY)
    names = method_names()
    assert len(names) == len(set(names))
    assert {"lora-user", "lora-persona", "lora-global", "dpo-user", "rag-bm25", "attributes"} <= set(names)


def test_aliases_resolve_to_a_method_and_its_config() -> None:
    assert resolve_alias("lora-global") == ("lora", {"scope": "global"})
    assert resolve_alias("attributes") == ("profile", {"summary": False})
    assert resolve_alias("soups") == ("soups", {})
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        resolve_alias("nope")


@pytest.mark.parametrize(
    ("spec", "overrides", "expected"),
    [
        ("rag-bm25", None, set()),
        ("rag-dense", None, {"embedder"}),
        ("rag-bm25", {"rag-bm25": {"persona_by": "cluster"}}, {"embedder"}),
        ("profile", None, {"generator"}),
        ("attributes", None, set()),
        ("lora-global", None, {"generator"}),
        ("lora-persona", None, {"generator", "embedder"}),
        ("lora-global+rag-dense+attributes", None, {"generator", "embedder"}),
    ],
    ids=lambda v: str(v),
)
def test_needs_follow_each_config(spec: str, overrides, expected: set[str]) -> None:
    assert needs_of(spec, overrides) == expected


def test_trainers_are_named_at_registration_and_imported_on_first_use() -> None:
    assert {"dpo", "lora", "softprompt"} <= set(trainable_methods())
    assert not {"rag", "identity", "profile", "persona", "soups"} & set(trainable_methods())
    from tailorlm.personalize.lora.train import train_lora

    assert get_trainer("lora") is train_lora
    with pytest.raises(KeyError, match="no trainer for method 'rag'"):
        get_trainer("rag")
