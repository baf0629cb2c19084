"""PPlug-style soft prompts on the real SmolLM2 and MiniLM: projector training (tiny: hidden 32,
2 soft tokens, 3 steps, <= 64 tokens), reload, serving per-row soft prompts, leakage guards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tailorlm.data import Document, Store, TaskExample
from tailorlm.models.base import GenerationConfig
from tailorlm.personalize import Query, build_method, parse_method_spec

TASK = "amazon-title"
STYLES = {  # each training user titles in a recognisable style
    "loud": ("AMAZING {}!!! BUY IT", 5),
    "terse": ("{} ok", 3),
}
ITEMS = ["guitar strings", "capo", "tuner", "pedal"]
TRAIN_CFG = {"hidden": 32, "n_tokens": 2, "steps": 3, "batch_size": 6, "max_length": 64, "lr": 1e-4}


def _doc(user: str, i: int, item: str, title: str, rating: int, ts: int) -> Document:
    return Document(
        user_id=user,
        doc_id=f"{user}-d{i}",
        doc_kind="review",
        text=f"I bought the {item} for my band. It works and sounds fine.",
        title=title,
        rating=rating,
        timestamp=ts,
    )


def _example(doc: Document) -> TaskExample:
    return TaskExample(
        task=TASK,
        example_id=f"{doc.doc_id}-ex",
        user_id=doc.user_id,
        input=doc.text,
        target=doc.title,
        doc_id=doc.doc_id,
        timestamp=doc.timestamp,
    )


@pytest.fixture(scope="module")
def minilm():
    from tailorlm.models import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(batch_size=16)


@pytest.fixture(scope="module")
def sp_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    tmp = tmp_path_factory.mktemp("softprompt")
    store = Store(f"sqlite:///{tmp / 's.db'}", files_dir=tmp / "files")
    recs: list = []
    for user, (pattern, rating) in STYLES.items():
        for i, item in enumerate(ITEMS):
            doc = _doc(user, i, item, pattern.format(item), rating, 100 + i)
            recs += [doc, _example(doc)]
    # "newbie" is never in a training population: earlier reviews, the query's own review
    # (the target, t=250), and a review from the future (t=400)
    recs += [
        _doc("newbie", 0, "strap", "Nice strap", 4, 200),
        _doc("newbie", 1, "picks", "Good picks", 4, 210),
        _doc("newbie", 2, "cable", "SECRET TARGET TITLE", 4, 250),
        _doc("newbie", 3, "stand", "FUTURE TITLE", 4, 400),
    ]
    store.add(recs)
    return store


def _weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


PROMPT = [[{"role": "user", "content": "Write a short title for a review of a guitar tuner."}]]
SHORT = GenerationConfig(max_new_tokens=8)


@pytest.fixture(scope="module")
def trained(smollm, minilm, sp_store: Store):
    """Train the projector once for the module; record what the LLM looked like before."""
    from tailorlm.adapters import AdapterRegistry
    from tailorlm.models.base import model_fingerprint
    from tailorlm.personalize.registry import get_trainer
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob

    before = {"digest": _weights_digest(smollm.base_model), "text": smollm.generate(PROMPT, config=SHORT)}
    registry = AdapterRegistry(sp_store, base_model=model_fingerprint(smollm))
    seen: list[tuple[int, int, float]] = []
    ctx = TrainContext(
        store=sp_store,
        registry=registry,
        generator=smollm,
        embedder=minilm,
        users=sorted(STYLES),
        progress=lambda s, n, loss: seen.append((s, n, loss)),
    )
    record = get_trainer("softprompt")(TrainJob("softprompt", "global", "", TASK, TRAIN_CFG), ctx)
    return record, before, ctx, seen


def _method(smollm, minilm, store: Store):
    return build_method("softprompt", {}, generator=smollm, embedder=minilm).fit(store)


def test_training_loss_falls_and_leaves_the_llm_unchanged(smollm, trained) -> None:
    record, before, _, seen = trained
    curve = record.meta["loss_curve"]
    assert len(curve) == 3 and [s for s, _, _ in seen] == [1, 2, 3]
    assert record.meta["loss_after"] < curve[0]  # the trained projector beats its initialisation
    # 2 users x 4 examples, each user's first example has no earlier history -> skipped
    assert record.meta["examples"] == 6 and record.meta["skipped_no_history"] == 2
    assert record.key.scope == "global" and record.key.owner == ""
    assert (record.path / "projector.safetensors").is_file()
    # the manifest: both users taught it 3 rows each; the job re-runs it (retrain-stale)
    assert record.manifest["users"] == 2 and record.manifest["examples"] == 6
    assert record.manifest["options"]["job"]["method"] == "softprompt"
    assert _weights_digest(smollm.base_model) == before["digest"]
    assert all(p.grad is None for p in smollm.base_model.parameters())
    assert smollm.generate(PROMPT, config=SHORT) == before["text"]


def test_saved_projector_reloads_to_identical_outputs(smollm, minilm, sp_store, trained) -> None:
    import torch

    from tailorlm.personalize.softprompt.config import SoftPromptTrainConfig
    from tailorlm.personalize.softprompt.projector import UserVectors, load_projector
    from tailorlm.personalize.softprompt.train import answer_loss, encode_row, training_set

    record, _, ctx, _ = trained
    projector, spec = load_projector(record.path)
    job_cfg = SoftPromptTrainConfig.from_mapping(TRAIN_CFG)
    from tailorlm.personalize.training.jobs import TrainJob

    rows, vectors, _ = training_set(
        TrainJob("softprompt", "global", "", TASK, TRAIN_CFG), ctx, job_cfg, spec, UserVectors(sp_store, minilm)
    )
    n = min(len(rows), job_cfg.batch_size)
    with torch.no_grad():
        loss = answer_loss(
            smollm, projector, spec, [encode_row(smollm.tokenizer, r, 64) for r in rows[:n]], vectors[:n]
        )
    assert float(loss) == pytest.approx(record.meta["loss_after"], rel=1e-6)

    query = Query("I bought the tuner. Works well.", task=TASK, timestamp=1000)
    a = _method(smollm, minilm, sp_store).personalize("loud", query)
    b = _method(smollm, minilm, sp_store).personalize("loud", query)
    assert torch.equal(a.soft_prompt, b.soft_prompt)
    assert smollm.generate([a.messages], config=SHORT, soft_prompt=[a.soft_prompt]) == smollm.generate(
        [b.messages], config=SHORT, soft_prompt=[b.soft_prompt]
    )


def test_different_users_get_different_soft_prompts_and_outputs(smollm, minilm, sp_store, trained) -> None:
    import numpy as np
    import torch

    method = _method(smollm, minilm, sp_store)
    query = Query("I bought the capo for my band.", task=TASK, timestamp=1000)
    loud, terse = method.personalize("loud", query), method.personalize("terse", query)
    assert loud.soft_prompt.shape == (2, 576) and not torch.allclose(loud.soft_prompt, terse.soft_prompt)
    assert loud.record.scope == "user" and loud.record.soft_prompt["history_items"] == 4
    scores = smollm.score_choices(
        [loud.messages, terse.messages], ["Great capo", "ok"], soft_prompt=[loud.soft_prompt, terse.soft_prompt]
    )
    assert not np.allclose(scores[0], scores[1])
    plain = smollm.score_choices([loud.messages], ["Great capo", "ok"])
    assert not np.allclose(scores[0], plain[0])


def test_rows_without_a_soft_prompt_are_unchanged_and_batching_respects_padding(smollm) -> None:
    import numpy as np
    import torch

    batch = [
        [{"role": "user", "content": "Name a color."}],
        [{"role": "user", "content": "Write a title for a review of warm-sounding guitar strings."}],
    ]
    torch.manual_seed(0)
    soft = torch.randn(2, 576) * 0.5
    plain = smollm.generate(batch, config=SHORT)
    mixed = smollm.generate(batch, config=SHORT, soft_prompt=[soft, None])
    assert mixed[1] == plain[1] == smollm.generate(batch[1:], config=SHORT)[0]
    assert mixed[0] == smollm.generate(batch[:1], config=SHORT, soft_prompt=[soft])[0]  # left padding
    assert smollm.generate(batch, config=SHORT, soft_prompt=[None, None]) == plain
    for choices in (["1", "2", "3"], ["red", "dark blue"]):  # one forward pass / per-choice sequences
        base = smollm.score_choices(batch, choices)
        with_soft = smollm.score_choices(batch, choices, soft_prompt=[soft, None])
        # the plain row is unchanged up to rounding (bf16 kernels on AMX CPUs round differently
        # with another row's shape in the batch); the soft prompt moves its own row far more
        assert np.allclose(with_soft[1], base[1], atol=1e-4) and not np.allclose(with_soft[0], base[0])
        alone = smollm.score_choices(batch[:1], choices, soft_prompt=[soft])
        assert np.allclose(with_soft[0], alone[0], atol=1e-4)
    with pytest.raises(ValueError, match=r"soft_prompt\[0\] must be a float \(n_tokens >= 1, 576\)"):
        smollm.generate(batch, config=SHORT, soft_prompt=[torch.zeros(2, 10), None])
    with pytest.raises(ValueError, match="soft_prompt has 1 entries but the batch has 2"):
        smollm.generate(batch, config=SHORT, soft_prompt=[soft])


def test_new_user_is_served_without_training_and_target_and_future_never_leak(
    smollm, minilm, sp_store, trained
) -> None:
    from tailorlm.personalize.softprompt.projector import UserVectors

    record, _, ctx, _ = trained
    method = _method(smollm, minilm, sp_store)
    # the query is newbie's own review at t=300: its target document (t=250) must not count
    query = Query("I bought the cable for my band.", task=TASK, timestamp=300, exclude_doc_ids=("newbie-d2",))
    out = method.personalize("newbie", query)
    assert "newbie" not in ctx.users and out.soft_prompt is not None and out.record.scope == "user"
    assert out.record.soft_prompt["history_ids"] == ["doc:newbie-d0", "doc:newbie-d1"]
    assert out.record.soft_prompt["projector"] == record.name
    assert [r.key.scope for r in ctx.registry.list(method="softprompt")] == ["global"]  # nothing per user
    # the guard is what removes it: without the exclusion the target would be pooled
    unguarded = Query(query.text, task=TASK, timestamp=300)
    _, ids = UserVectors(sp_store, minilm)("newbie", unguarded, method.projectors_[TASK].spec)
    assert "doc:newbie-d2" in ids and "doc:newbie-d3" not in ids
    # a user with no eligible history gets no soft prompt, and says so
    early = method.personalize("newbie", Query("x", task=TASK, timestamp=150))
    assert early.soft_prompt is None and early.record.scope == "none"
    assert early.record.soft_prompt["history_items"] == 0


def test_composes_with_rag_and_predictors_pass_the_soft_prompt(smollm, minilm, sp_store, trained) -> None:
    from tailorlm.tasks import get_task
    from tailorlm.tasks.predict import GeneratePredictor

    pipe = parse_method_spec("softprompt+rag-bm25", collaborators={"generator": smollm, "embedder": minilm})
    pipe.fit(sp_store)
    query = Query("I bought the pedal for my band.", task=TASK, timestamp=1000)
    out = pipe.personalize("loud", query)
    assert out.record.methods == ["softprompt", "rag-bm25"] and out.soft_prompt is not None
    assert out.record.retrieved and "AMAZING" in out.messages[0]["content"]
    task = get_task(TASK)
    pred = GeneratePredictor(smollm).predict(task, [out], [()])[0]
    config = GenerationConfig(max_new_tokens=task.max_new_tokens)
    assert pred.raw == smollm.generate([out.messages], config=config, soft_prompt=[out.soft_prompt])[0]


def test_missing_projector_names_the_train_command(smollm, minilm, sp_store, trained, tmp_path: Path) -> None:
    method = _method(smollm, minilm, sp_store)
    with pytest.raises(LookupError, match="tailorlm train --method softprompt --scope global --task amazon-rating"):
        method.personalize("loud", Query("Great strings", task="amazon-rating", timestamp=1000))
    empty = Store(f"sqlite:///{tmp_path / 'e.db'}", files_dir=tmp_path / "files")
    with pytest.raises(LookupError, match="tailorlm train --method softprompt --scope global"):
        build_method("softprompt", {}, generator=smollm, embedder=minilm).fit(empty)
    skip = build_method("softprompt", {"if_missing": "skip"}, generator=smollm, embedder=minilm).fit(empty)
    assert skip.personalize("loud", Query("x", task=TASK)).soft_prompt is None


def test_deleting_a_user_removes_their_cached_history_vectors(smollm, minilm, sp_store, trained) -> None:
    method = _method(smollm, minilm, sp_store)
    method.personalize("terse", Query("x", task=TASK, timestamp=1000))
    ids, _, _ = sp_store.get_embeddings(user_id="terse", model=minilm.name)
    assert any(i.startswith("softprompt|") for i in ids)
    method.forget("terse")
    sp_store.delete_user(user_id="terse")
    assert sp_store.get_embeddings(user_id="terse", model=minilm.name)[0] == []


def test_trainer_refuses_bad_jobs_clearly() -> None:
    from tailorlm.personalize.softprompt.config import SoftPromptTrainConfig
    from tailorlm.personalize.softprompt.train import train_softprompt
    from tailorlm.personalize.training.jobs import TrainJob

    with pytest.raises(ValueError, match="one global projector per task"):
        train_softprompt(TrainJob("softprompt", "user", "u1", TASK), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden'\]"):
        SoftPromptTrainConfig.from_mapping({"hiden": 3})
    with pytest.raises(ValueError, match="invalid pooling"):
        SoftPromptTrainConfig(pooling="max")
