"""The Personalizer contract, run over every registered method (a new method is covered automatically)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.data import Document, Store, User
from tailorlm.personalize import REGISTRY, BasePersonalizer, Personalizer, Query, build_method
from tailorlm.testing import FakeGenerator

# Settings that let each method run without a real embedder (dense/cluster variants
# are exercised on the real embedder in test_retrieval_real.py).
# softprompt: no projector is trained in these stores (and FakeGenerator takes no soft
# prompts), so it serves without one; the real path is in tests/train/test_softprompt.py.
CONFIGS: dict[str, dict] = {
    "persona": {"persona_by": "occupation"},
    "softprompt": {"if_missing": "skip"},
    "lora": {"if_missing": "skip"},
    "dpo": {"if_missing": "skip"},
    "soups": {"if_missing": "skip"},
}


def _make(name: str) -> BasePersonalizer:
    import inspect

    cls = REGISTRY[name].method_cls
    collab = {"generator": FakeGenerator()} if "generator" in inspect.signature(cls.__init__).parameters else {}
    return build_method(name, CONFIGS.get(name, {}), **collab)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    recs: list = []
    for uid, occ, word in (
        ("alice", "drummer", "ALICEWORD"),
        ("bob", "drummer", "BOBWORD"),
        ("carol", "pianist", "CAROLWORD"),
    ):
        recs.append(User(user_id=uid, occupation=occ))
        for i in range(4):
            recs.append(
                Document(
                    user_id=uid,
                    doc_kind="review",
                    text=f"{word} strings review number {i}",
                    title=f"{word} title {i}",
                    rating=1 + i,
                    timestamp=100 + i,
                )
            )
    s.add(recs)
    return s


QUERY = Query("strings review", task="amazon-title", timestamp=200)
methods = pytest.mark.parametrize("name", sorted(REGISTRY))


@methods
def test_satisfies_protocol_and_init_sets_no_learned_state(name: str) -> None:
    method = _make(name)
    assert isinstance(method, Personalizer)
    assert not [a for a in vars(method) if a.endswith("_") and not a.startswith("_")]


@methods
def test_unfitted_method_refuses_to_act(name: str) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        _make(name).personalize("alice", QUERY)


@methods
def test_fit_returns_self_and_is_idempotent(name: str, store: Store) -> None:
    method = _make(name)
    assert method.fit(store) is method
    first = method.personalize("alice", QUERY).messages
    assert method.fit(store).personalize("alice", QUERY).messages == first


@methods
def test_config_roundtrip_reproduces_outputs(name: str, store: Store) -> None:
    method = _make(name).fit(store)
    data = method.to_dict()
    clone = _make(name)
    clone = type(clone)(
        REGISTRY[name].config_cls.from_dict(data["config"]),
        **({"generator": FakeGenerator()} if hasattr(clone, "generator") else {}),
    ).fit(store)
    assert clone.to_dict() == data
    assert clone.personalize("alice", QUERY).messages == method.personalize("alice", QUERY).messages


@methods
def test_forgetting_one_user_leaves_others_unchanged(name: str, store: Store) -> None:
    method = _make(name).fit(store)
    bob_before = method.personalize("bob", QUERY)
    method.personalize("alice", QUERY)
    method.forget("alice")
    bob_after = method.personalize("bob", QUERY)
    assert bob_after.messages == bob_before.messages
    assert bob_after.record == bob_before.record


@methods
def test_user_scope_never_shows_another_users_data(name: str, store: Store) -> None:
    method = _make(name).fit(store)
    out = method.personalize("alice", QUERY)
    text = " ".join(m["content"] for m in out.messages)
    if out.record.scope == "user":
        assert "BOBWORD" not in text and "CAROLWORD" not in text
    assert out.record.prompt_tokens > 0


def test_registry_refuses_duplicates_and_bad_names() -> None:
    from tailorlm.personalize import register_method
    from tailorlm.personalize.identity import IdentityConfig, IdentityPersonalizer

    with pytest.raises(ValueError, match="already registered"):
        register_method(name="rag", config_cls=IdentityConfig, method_cls=IdentityPersonalizer)
    with pytest.raises(ValueError, match="lowercase"):
        register_method(name="Bad Name", config_cls=IdentityConfig, method_cls=IdentityPersonalizer)


def test_unknown_config_field_is_named() -> None:
    with pytest.raises(ValueError, match="retreiver"):
        build_method("rag", {"retreiver": "bm25"})
