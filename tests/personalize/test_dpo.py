"""DPO adapters on the real SmolLM2 (a few steps, tiny sequences) and Personalized-Soups merging.

One module-scoped store is trained once and the tests read it in order; the last test
deletes the user (so it must stay last). Real Amazon reviewers are used when
../shared/data is present, else a few hand-written reviews.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tailorlm.data import Document, Preference, Store, TaskExample, User
from tailorlm.models.base import GenerationConfig
from tailorlm.personalize import Query, build_method
from tailorlm.personalize.training.pairs import PairConfig, derive_pairs, training_pairs

pytestmark = pytest.mark.model

TASK = "amazon-title"
FAST = {"steps": 2, "lr": 5e-3, "r": 4, "alpha": 8, "batch_size": 2, "max_pairs": 2, "max_prompt_tokens": 24}
CFG = GenerationConfig(max_new_tokens=10)

HAND = [  # (user, item, time, title, review): used when the real data is absent
    ("bob", "s1", 100, "Bright", "These guitar strings sound bright and loud. I put them on my acoustic guitar."),
    ("bob", "c1", 150, "Fine cable", "This patch cable works on my pedalboard. It is quiet and cheap enough."),
    (
        "alice",
        "s2",
        200,
        "Warm nylon",
        "Nylon guitar strings with a warm tone for my classical guitar. They stay in tune.",
    ),
    ("alice", "c2", 250, "Quiet cables", "Short patch cables for my pedalboard that never hum. The plugs are solid."),
    (
        "alice",
        "t1",
        300,
        "Good tuner",
        "A clip-on tuner that reads my guitar strings fast every day. The screen is bright.",
    ),
]


@dataclass
class Trained:
    store: Store
    registry: object
    user: str
    record: object
    base_before: list[str]
    conv: list[dict[str, str]]
    pair: Preference


def _hand_store(store: Store) -> None:
    recs: list = []
    for uid, item, ts, title, text in HAND:
        doc = Document(user_id=uid, doc_kind="review", text=text, title=title, item_id=item, timestamp=ts)
        ex = TaskExample(
            task=TASK,
            example_id=doc.doc_id or "",
            user_id=uid,
            input=text,
            target=title,
            doc_id=doc.doc_id,
            timestamp=ts,
        )
        recs += [doc, ex]
    store.add(recs)


@pytest.fixture(scope="module")
def trained(smollm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    from tailorlm.adapters import AdapterRegistry
    from tailorlm.models.base import model_fingerprint
    from tailorlm.personalize.dpo.config import DpoTrainConfig
    from tailorlm.personalize.dpo.train import dpo_pairs
    from tailorlm.personalize.registry import get_trainer
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob

    tmp = tmp_path_factory.mktemp("dpo")
    store = Store(f"sqlite:///{tmp / 's.db'}", files_dir=tmp / "files")
    data = os.environ.get("TAILORLM_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
    real = Path(data) / "amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz"
    if real.is_file():
        from tailorlm.data.loaders import load_dataset
        from tailorlm.testing import amazon_subset

        load_dataset(store, "amazon", amazon_subset(real, tmp / "sub.json", n_users=4))
    else:
        _hand_store(store)
    users = store.list_users()
    derive_pairs(store, users, config=PairConfig(dimensions=True))
    user = next(u for u in users if len(training_pairs(store, [u])) >= 3)
    loaded_before = list(smollm.adapters)
    registry = AdapterRegistry(store, base_model=model_fingerprint(smollm))
    ctx = TrainContext(store=store, registry=registry, generator=smollm, users=users)

    job = TrainJob("dpo", "user", user, TASK, FAST)
    pair = dpo_pairs(job, ctx, DpoTrainConfig.from_mapping(FAST))[0][-1]  # a pair it trains on
    ids = smollm.tokenizer(pair.prompt, add_special_tokens=False)["input_ids"][: FAST["max_prompt_tokens"]]
    prompt = smollm.tokenizer.decode(ids)  # the prompt as training cuts it
    conv = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": prompt}]
    base_before = smollm.generate([conv], config=CFG)
    record = get_trainer("dpo")(job, ctx)
    for dim in ("concise", "detailed"):
        get_trainer("dpo")(TrainJob("dpo", "global", "", TASK, {**FAST, "dimension": dim, "steps": 1}), ctx)
    yield Trained(store, registry, user, record, base_before, conv, pair)
    with warnings.catch_warnings():  # PEFT warns when the active adapter goes
        warnings.simplefilter("ignore", UserWarning)
        for name in [n for n in smollm.adapters if n not in loaded_before]:
            smollm.delete_adapter(name)
    store.close()


def test_dpo_learns_from_the_users_earlier_pairs_only(trained: Trained) -> None:
    meta = trained.record.meta
    curve = meta["loss_curve"]
    assert len(curve) == 2 and curve[-1] < curve[0], curve
    assert meta["margin_curve"][-1] > meta["margin_curve"][0]
    assert meta["pairs"] == 2 and meta["users"] == 1 and meta["seconds"] > 0 and meta["tokens"] > 0
    assert len(meta["data_snapshot"]) == 64 and meta["size_bytes"] > 0
    latest = max(e.timestamp or 0 for e in trained.store.get_examples(task=TASK, user_id=trained.user))
    assert meta["last_pair_time"] < latest  # the latest example is the query: its pair is held out
    assert trained.record.key.variant == "default" and trained.record.name.startswith("dpo-user-")
    assert (trained.record.path / "adapter_config.json").is_file()


def test_training_leaves_the_base_model_unchanged(smollm, trained: Trained) -> None:
    assert smollm.generate([trained.conv], config=CFG) == trained.base_before


def test_saved_adapter_reloads_to_identical_outputs_and_prefers_chosen(smollm, trained: Trained) -> None:
    rec = trained.record
    choices = [trained.pair.chosen, trained.pair.rejected]
    base = smollm.score_choices([trained.conv], choices)[0]
    smollm.add_adapter(rec.name, rec.path)
    first = smollm.generate([trained.conv], config=CFG, adapter=rec.name)
    tuned = smollm.score_choices([trained.conv], choices, adapter=rec.name)[0]
    smollm.delete_adapter(rec.name)
    smollm.add_adapter(rec.name, rec.path)
    assert smollm.generate([trained.conv], config=CFG, adapter=rec.name) == first
    assert np.array_equal(smollm.score_choices([trained.conv], choices, adapter=rec.name)[0], tuned)
    # DPO moved probability from the rejected title toward the user's own
    assert tuned[0] - tuned[1] > base[0] - base[1]
    smollm.delete_adapter(rec.name)


def test_dpo_method_serves_the_users_adapter(smollm, trained: Trained) -> None:
    method = build_method("dpo", {"if_missing": "skip"}, generator=smollm).fit(trained.store)
    query = Query(trained.pair.prompt[:200], task=TASK)
    out = method.personalize(trained.user, query)
    assert out.adapter == trained.record.name and out.record.scope == "user"
    strict = build_method("dpo", {"scope": "user"}, generator=smollm).fit(trained.store)
    with pytest.raises(LookupError, match="tailorlm train --method dpo --scope user --user nobody"):
        strict.personalize("nobody", query)
    method.forget(trained.user)
    assert trained.record.name not in smollm.adapters


def test_soups_merges_dimension_adapters_with_per_user_weights(smollm, trained: Trained) -> None:
    store = trained.store
    store.add(
        [
            User(user_id="only-concise", attributes={"preference_weights": {"concise": 1, "detailed": 0}}),
            User(user_id="mostly-detailed", attributes={"preference_weights": '{"concise": 0.2, "detailed": 0.8}'}),
        ]
    )
    store.add(  # feedback from the workbench: three 'detailed' choices, one 'concise'
        [
            Preference(
                user_id="fan", prompt=f"p{i}", chosen="a", rejected="b", dimension=d, source="workbench", timestamp=i
            )
            for i, d in enumerate(["detailed", "detailed", "detailed", "concise"])
        ]
    )
    soups = build_method("soups", {"task": TASK}, generator=smollm).fit(store)
    query = Query(trained.pair.prompt[:200], task=TASK, timestamp=10)
    a = soups.personalize("only-concise", query)
    b = soups.personalize("mostly-detailed", query)
    fan = soups.personalize("fan", query)
    anyone = soups.personalize("stranger", query)
    assert fan.record.retrieved[0]["block"] == "soups"
    weights = {r["id"].split(":")[0]: r["score"] for r in fan.record.retrieved}
    assert weights == {"concise": 0.25, "detailed": 0.75} and fan.record.scope == "user"
    assert soups.weights_["stranger"]["source"] == "uniform" and anyone.record.scope == "global"
    assert a.adapter.startswith("soups-concise100-detailed0-") and b.adapter.startswith("soups-concise20-detailed80-")
    assert len({a.adapter, b.adapter, fan.adapter, anyone.adapter}) == 4

    concise = soups.dimension_adapters(TASK)[0][0]
    conv = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": query.text}]
    choices = [trained.pair.chosen, trained.pair.rejected]
    score = {n: smollm.score_choices([conv], choices, adapter=n)[0] for n in (a.adapter, b.adapter, concise.name)}
    np.testing.assert_allclose(score[a.adapter], score[concise.name], atol=1e-4)  # weights (1, 0) = the first
    assert smollm.generate([conv], config=CFG, adapter=a.adapter) == smollm.generate(
        [conv], config=CFG, adapter=concise.name
    )
    assert not np.allclose(score[a.adapter], score[b.adapter], atol=1e-4)  # other weights, other policy
    merges = soups.merges
    assert soups.personalize("only-concise", query).adapter == a.adapter and soups.merges == merges  # cached
    assert smollm.add_weighted_adapter(a.adapter, [concise.name], [1.0]) is False  # merged already: no-op
    with pytest.raises(ValueError, match="not loaded"):
        smollm.add_weighted_adapter("soup-x", ["no-such-adapter"], [1.0])
    with pytest.raises(ValueError, match="one weight per source"):
        smollm.add_weighted_adapter("soup-x", [concise.name], [0.5, 0.5])
    assert "soup-x" not in smollm.adapters


def test_deleting_the_user_removes_their_dpo_adapter_files(trained: Trained) -> None:  # keep last
    rec = trained.record
    assert rec.path.is_dir()
    assert rec.manifest is not None and rec.manifest["users"] == 1 and rec.manifest["examples"] == rec.meta["pairs"]
    learned = set(trained.store.trained_on(user_id=trained.user))  # their own adapter and the pooled ones
    own = trained.registry.ref(rec.key)
    assert own in learned
    report = trained.store.delete_user(user_id=trained.user)
    assert not rec.path.exists()
    assert trained.registry.get(rec.key) is None
    assert trained.registry.list(method="dpo", scope="global")  # pooled adapters stay
    # ... but those that learned from the user's pairs are marked stale, and only those
    assert {a.ref for a in report.stale} == learned - {own} == {a.ref for a in trained.store.stale_artifacts()}
