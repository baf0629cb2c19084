"""LoRA training on the real SmolLM2 (tiny: r=4 on q,v, <= 64 tokens, a few steps): loss falls,
adapters reload to identical outputs, switching adapters changes the output, the base model is
untouched by training, mixed-adapter batches equal per-adapter calls, the lora method serves
user -> global by the cold-start rule, and deleting a user removes their adapter files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.adapters import AdapterKey, AdapterRegistry
from tailorlm.data import Document, Store, TaskExample
from tailorlm.models.base import GenerationConfig, model_fingerprint
from tailorlm.personalize import Query, parse_method_spec
from tailorlm.personalize.registry import get_trainer
from tailorlm.personalize.training.data import sft_examples, user_examples
from tailorlm.personalize.training.jobs import TrainContext, TrainJob

pytestmark = pytest.mark.model

TASK = "amazon-title"
TINY = {"r": 4, "dropout": 0.0, "max_length": 64, "batch_size": 2}
GREEDY = GenerationConfig(max_new_tokens=6)
TITLES = {
    "alice": ["Bright crisp strings", "Bright punchy picks", "Bright clear cable"],
    "bob": ["Solid stand", "Solid strap"],
    "carol": ["Warm tone", "Warm mute"],
}


def _examples() -> list:
    recs: list = []
    for u, titles in TITLES.items():
        for i, title in enumerate(titles):
            text = f"These worked well on my guitar, number {i}."
            recs.append(Document(user_id=u, doc_kind="review", text=text, title=title, timestamp=100 + i))
            recs.append(
                TaskExample(task=TASK, example_id=f"{u}{i}", user_id=u, input=text, target=title, timestamp=100 + i)
            )
    return recs


@pytest.fixture(scope="module")
def trained(smollm, tmp_path_factory: pytest.TempPathFactory) -> dict:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('lora') / 's.db'}")
    store.add(_examples())
    held_out = sft_examples(user_examples(store, TASK, "alice", exclude_latest=False))[-1].chat()
    base_before = smollm.generate([held_out], config=GREEDY)
    loaded_before = list(smollm.adapters)
    reg = AdapterRegistry(store, base_model=model_fingerprint(smollm))
    steps: list[tuple[int, int, float]] = []
    ctx = TrainContext(store, reg, smollm, users=["alice", "bob"], progress=lambda *a: steps.append(a))
    train = get_trainer("lora")
    alice = train(TrainJob("lora", "user", "alice", TASK, {**TINY, "steps": 3, "lr": 5e-3}), ctx)
    glob = train(TrainJob("lora", "global", "", TASK, {**TINY, "steps": 1, "lr": 5e-3}), ctx)
    carol = train(TrainJob("lora", "user", "carol", TASK, {**TINY, "steps": 1, "init_from": "global"}), ctx)
    return {
        "store": store,
        "reg": reg,
        "ctx": ctx,
        "alice": alice,
        "global": glob,
        "carol": carol,
        "prompt": held_out,
        "base_before": base_before,
        "loaded_before": loaded_before,
        "progress": steps,
    }


def test_loss_falls_and_only_earlier_examples_are_used(trained: dict) -> None:
    rec = trained["alice"]
    curve = rec.meta["loss_curve"]
    assert len(curve) == 3 and curve[-1] < curve[0] * 0.8, curve
    assert rec.meta["examples"] == 2  # the latest of 3 is the held-out query
    assert rec.meta["last_example_time"] == 101
    assert rec.meta["tokens"] > rec.meta["answer_tokens"] > 0 and len(rec.meta["data_snapshot"]) == 64
    assert (rec.path / "adapter_config.json").is_file() and (rec.path / "meta.json").is_file()
    assert rec.meta["size_bytes"] > 10_000
    assert [s[:2] for s in trained["progress"][:3]] == [(1, 3), (2, 3), (3, 3)]
    assert trained["global"].meta["users"] == 2  # the population only: carol's data never pooled
    assert trained["carol"].key.variant == "init=global"
    assert trained["carol"].meta["init_from"] == trained["global"].name


def test_training_leaves_the_base_model_unchanged(smollm, trained: dict) -> None:
    assert smollm.adapters == trained["loaded_before"]
    assert smollm.generate([trained["prompt"]], config=GREEDY) == trained["base_before"]


def test_reload_is_identical_switching_changes_output_and_mixed_batch_matches(smollm, trained: dict) -> None:
    a, g, prompt = trained["alice"], trained["global"], trained["prompt"]
    try:
        smollm.add_adapter(a.name, a.path)
        first = smollm.generate([prompt], config=GREEDY, adapter=a.name)
        smollm.delete_adapter(a.name)
        smollm.add_adapter(a.name, a.path)
        smollm.add_adapter(g.name, g.path)
        assert smollm.generate([prompt], config=GREEDY, adapter=a.name) == first
        assert first != trained["base_before"]
        singles = [smollm.generate([prompt], config=GREEDY, adapter=n)[0] for n in (a.name, g.name, None)]
        mixed = smollm.generate([prompt] * 3, config=GREEDY, adapter=[a.name, g.name, None])
        assert mixed == singles and singles[2] == trained["base_before"][0]
    finally:
        for n in (a.name, g.name):
            if n in smollm.adapters:
                smollm.delete_adapter(n)


def test_lora_method_serves_user_then_global_and_names_the_missing_command(smollm, trained: dict) -> None:
    store = trained["store"]
    q = Query("These worked well on my guitar, number 2.", task=TASK, timestamp=102)
    method = parse_method_spec("lora", collaborators={"generator": smollm}).fit(store, ["alice", "bob"])
    try:
        out = method.personalize("alice", q)
        assert out.adapter == trained["alice"].name and out.record.scope == "user"
        bob = method.personalize("bob", q)  # no user adapter: the global one
        assert bob.adapter == trained["global"].name and bob.record.scope == "global"
        stranger = method.personalize("nobody", q)  # no history at all: cold start -> global
        assert stranger.record.scope == "global"
        answer = smollm.generate([out.messages], config=GREEDY, adapter=out.adapter)
        assert answer != trained["base_before"]
        user_only = parse_method_spec("lora-user", collaborators={"generator": smollm}).fit(store)
        with pytest.raises(LookupError, match="tailorlm train --method lora --scope user --user bob --task"):
            user_only.personalize("bob", q)
        oppu = parse_method_spec(
            "lora-user", collaborators={"generator": smollm}, overrides={"lora-user": {"variant": "init=global"}}
        ).fit(store)
        assert oppu.personalize("carol", q).adapter == trained["carol"].name
        method.forget("alice")
        assert trained["alice"].name not in smollm.adapters
    finally:
        for m in (method, oppu if "oppu" in locals() else None):
            if m is not None and m._cache is not None:
                m._cache.unload_all()
    assert smollm.adapters == trained["loaded_before"]


def test_a_vllm_server_serving_these_weights_finds_these_adapters(smollm, trained: dict) -> None:
    """``generator.adapter_base = "smollm2"`` names this generator without loading it."""
    from tailorlm.models import local_fingerprint
    from tailorlm.settings import default_cache_dir

    local = local_fingerprint("smollm2", cache_dir=default_cache_dir(), dtype=smollm.dtype)
    assert local == model_fingerprint(smollm)
    found = AdapterRegistry(trained["store"], base_model=local).get(trained["alice"].key)
    assert found is not None and found.name == trained["alice"].name


def test_persona_scope_serves_a_user_without_a_persona_at_global_scope(smollm, trained: dict) -> None:
    """The granularity rule: no attribute to group by (or no history) means no persona, so global."""
    q = Query("These worked well on my guitar, number 2.", task=TASK, timestamp=102)
    method = parse_method_spec(
        "lora-persona", collaborators={"generator": smollm}, overrides={"lora-persona": {"persona_by": "occupation"}}
    ).fit(trained["store"], ["alice", "bob"])
    try:
        out = method.personalize("nobody", q)
        assert out.record.scope == "global" and out.adapter == trained["global"].name
    finally:
        method._cache.unload_all()
    assert smollm.adapters == trained["loaded_before"]


def test_clear_errors(trained: dict) -> None:
    train, ctx = get_trainer("lora"), trained["ctx"]
    with pytest.raises(ValueError, match="no training examples of task 'amazon-title' for user 'nobody'"):
        train(TrainJob("lora", "user", "nobody", TASK, {**TINY, "steps": 1}), ctx)
    with pytest.raises(ValueError, match=r"unknown option.*'stpes'"):
        train(TrainJob("lora", "user", "alice", TASK, {"stpes": 1}), ctx)
    with pytest.raises(ValueError, match="invalid lr"):
        train(TrainJob("lora", "user", "alice", TASK, {"lr": -1}), ctx)


def test_delete_user_removes_only_that_users_adapter_files(trained: dict) -> None:
    store, reg = trained["store"], trained["reg"]
    alice, glob, carol = trained["alice"], trained["global"], trained["carol"]
    report = store.delete_user(user_id="alice")
    assert str(alice.path) in report.files and not Path(alice.path).exists()
    assert Path(glob.path).exists() and Path(carol.path).exists()
    assert reg.get(AdapterKey("lora", "user", "alice", TASK)) is None
    assert reg.get(carol.key) == carol
