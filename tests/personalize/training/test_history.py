"""Retrieval-augmented fine-tuning (LoraTrainConfig.history): the training prompts quote only the
same user's strictly earlier history, rendered by the inference retrieval method; never the
example's own document, a later document or a test user's; the adapter trained this way is
stored under its own variant and served by ``lora-global`` with ``history=...``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.adapters import AdapterKey, AdapterRegistry
from tailorlm.data import Document, Store, TaskExample
from tailorlm.models.base import model_fingerprint
from tailorlm.personalize import Query, parse_method_spec
from tailorlm.personalize.lora.config import LoraTrainConfig, with_history
from tailorlm.personalize.lora.train import training_rows
from tailorlm.personalize.registry import get_trainer
from tailorlm.personalize.training.data import population_examples
from tailorlm.personalize.training.history import history_method, history_query, history_sft_examples
from tailorlm.personalize.training.jobs import TrainContext, TrainJob

TASK = "amazon-title"
# Each document's text and title carry a marker unique to it (user, index): a prompt
# quoting document i of user u contains "u<i>mark" and "u<i>title".
USERS = {"ann": 4, "ben": 4, "tess": 3}  # tess: a test user, never in the population


def _mark(u: str, i: int) -> str:
    return f"{u}{i}mark"


def _records(*, dated: bool = True) -> list:
    recs: list = []
    for u, n in USERS.items():
        for i in range(n):
            ts = 100 + i if dated else None
            text = f"guitar strings sound bright {_mark(u, i)} review"
            title = f"{u}{i}title"
            recs.append(Document(user_id=u, doc_id=f"{u}-{i}", doc_kind="review", text=text, title=title, timestamp=ts))
            recs.append(
                TaskExample(
                    task=TASK,
                    example_id=f"{u}{i}",
                    user_id=u,
                    input=text,
                    target=title,
                    timestamp=ts,
                    doc_id=f"{u}-{i}" if dated else None,
                )
            )
    return recs


@pytest.fixture
def history_store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    s.add(_records())
    return s


def _rows(store: Store, population: list[str], **cfg) -> list:
    exs = population_examples(store, TASK, population)
    method = history_method("rag-bm25", store, population, **cfg)
    return history_sft_examples(exs, method, store)


def _prompt(row) -> str:
    return "\n".join(c for _, c in row.messages)


def test_rows_quote_only_the_same_users_earlier_history(history_store: Store) -> None:
    rows = _rows(history_store, ["ann", "ben"], k=4)
    assert len(rows) == 8
    for row in rows:
        u, i = row.user_id, int(row.example_id[len(row.user_id) :])
        system, request = row.messages[0][1], row.messages[1][1]
        # the example's own input is the request; its target (own title) appears nowhere
        assert _mark(u, i) in request and row.target not in _prompt(row)
        # every earlier document of the same user is quoted (bm25 matches each one here) ...
        assert [j for j in range(USERS[u]) if _mark(u, j) in system] == list(range(i))
        # ... and nothing at or after the example's time, nothing of another user
        for other, n in USERS.items():
            for j in range(n):
                if other != u or j >= i:
                    assert _mark(other, j) not in system and f"{other}{j}title" not in system
        assert row.history_items == i
    first = next(r for r in rows if r.example_id == "ann0")  # no earlier history: the plain prompt
    assert first.history_items == 0 and "quoted data" not in first.messages[0][1]


def test_rows_are_the_inference_prompts(history_store: Store) -> None:
    """Byte for byte what the ``rag-bm25`` row method renders for the same query."""
    rows = _rows(history_store, ["ann", "ben"], k=2, budget_tokens=1024)
    infer = parse_method_spec("rag-bm25", overrides={"rag-bm25": {"k": 2}}).fit(history_store, ["ann", "ben"])
    ex = next(e for e in population_examples(history_store, TASK, ["ben"]) if e.example_id == "ben3")
    row = next(r for r in rows if r.example_id == "ben3")
    assert row.chat() == infer.personalize("ben", Query.from_example(ex)).messages
    assert row.history_items == 2


def test_undated_examples_exclude_their_own_document(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'u.db'}")
    store.add(_records(dated=False))
    ex = next(e for e in population_examples(store, TASK, ["ann"]) if e.example_id == "ann1")
    assert ex.timestamp is None and ex.doc_id is None
    assert history_query(store, ex).exclude_doc_ids == ("ann-1",)
    rows = _rows(store, ["ann"], k=8)
    for row in rows:
        assert row.target not in row.messages[0][1]
        assert _mark("ann", int(row.example_id[3:])) not in row.messages[0][1]


def test_training_rows_come_only_from_the_population(history_store: Store) -> None:
    """A test user (tess) is neither a row nor quoted, even where retrieval would fall back."""
    ctx = TrainContext(history_store, None, None, users=["ann", "ben"])  # type: ignore[arg-type]
    cfg = LoraTrainConfig(history="rag-bm25", history_k=4)
    rows, users = training_rows(TrainJob("lora", "global", "", TASK, {}), ctx, cfg)
    assert users == ["ann", "ben"] and {r.user_id for r in rows} == {"ann", "ben"} and len(rows) == 8
    assert not any("tess" in _prompt(r) for r in rows)
    assert sum(r.history_items > 0 for r in rows) == 6  # each user's first example has no history


def test_history_variant_keeps_existing_names() -> None:
    assert LoraTrainConfig().key_variant == "default"
    assert LoraTrainConfig(init_from="global").key_variant == "init=global"
    assert LoraTrainConfig(history="rag-bm25", history_k=4).key_variant == "history=rag-bm25,k=4"
    assert LoraTrainConfig(history="rag-bm25").key_variant == "history=rag-bm25"
    cfg = LoraTrainConfig(history="rag-bm25", history_k=4, init_from="global")
    assert cfg.key_variant == "init=global;history=rag-bm25,k=4"
    assert cfg.global_variant == with_history("default", "rag-bm25", 4) == "history=rag-bm25,k=4"
    with pytest.raises(ValueError, match="history_k"):
        LoraTrainConfig(history_k=4)
    with pytest.raises(ValueError, match="retrieves"):
        history_method("identity", Store("sqlite://"), [], k=4)


@pytest.mark.model
def test_training_with_history_registers_a_distinct_adapter(smollm, history_store: Store) -> None:
    reg = AdapterRegistry(history_store, base_model=model_fingerprint(smollm))
    ctx = TrainContext(history_store, reg, smollm, users=["ann", "ben"])
    tiny = {"r": 4, "dropout": 0.0, "batch_size": 1, "lr": 5e-3}
    train = get_trainer("lora")
    plain = train(TrainJob("lora", "global", "", TASK, {**tiny, "steps": 1, "max_length": 48}), ctx)
    with_history = {"steps": 2, "max_length": 80, "history": "rag-bm25", "history_k": 4}
    rag = train(TrainJob("lora", "global", "", TASK, {**tiny, **with_history}), ctx)
    curve = rag.meta["loss_curve"]
    assert len(curve) == 2 and curve[-1] < curve[0], curve
    assert rag.key.variant == "history=rag-bm25,k=4" and plain.key.variant == "default"
    assert rag.name != plain.name and rag.path != plain.path
    assert rag.meta["history_rows"] == 6 and plain.meta["history_rows"] == 0
    assert rag.meta["config"]["history"] == "rag-bm25" and rag.meta["users"] == 2
    assert rag.meta["data_snapshot"] != plain.meta["data_snapshot"]
    assert reg.get(AdapterKey("lora", "global", "", TASK, "history=rag-bm25,k=4")).name == rag.name  # type: ignore[union-attr]
    assert reg.get(AdapterKey("lora", "global", "", TASK)).name == plain.name  # type: ignore[union-attr]

    q = Query("guitar strings sound bright review", task=TASK, timestamp=200)
    spec = "lora-global+rag-bm25"
    overrides = {"lora-global": {"history": "rag-bm25", "history_k": 4}, "rag-bm25": {"k": 4}}
    served = parse_method_spec(spec, collaborators={"generator": smollm}, overrides=overrides)
    default = parse_method_spec(spec, collaborators={"generator": smollm})
    try:
        out = served.fit(history_store, ["ann", "ben"]).personalize("ann", q)
        assert out.adapter == rag.name and out.record.retrieved  # the RAG-FT adapter, with history
        assert default.fit(history_store, ["ann", "ben"]).personalize("ann", q).adapter == plain.name
        assert rag.name in smollm.adapters  # round trip: loaded back from its registered folder
    finally:
        for name in (rag.name, plain.name):
            if name in smollm.adapters:
                smollm.delete_adapter(name)


def test_a_suite_trains_it_from_the_population_and_rows_select_it(history_store: Store) -> None:
    """The suite surface: a ``[[train]]`` config with history, a row selecting that adapter; the
    users the row evaluates are neither training rows nor quoted in any training prompt."""
    from tailorlm.eval.splits import make_split
    from tailorlm.eval.suite import SuiteConfig
    from tailorlm.eval.training import plan_jobs
    from tailorlm.personalize.registry import needs_of

    lora = {"history": "rag-bm25", "history_k": 4}
    suite = SuiteConfig.from_dict(
        {
            "name": "ragft",
            "split": "user",
            "budget_tokens": 512,
            "rows": [{"task": TASK, "method": "lora-global+rag-bm25", "predictor": "generate", "users": 1,
                      "overrides": {"lora-global": lora, "rag-bm25": {"k": 4}}}],
            "train": [{"method": "lora", "scope": "global", "task": TASK, "config": {"steps": 2, **lora}}],
        }
    )  # fmt: skip
    assert needs_of(suite.rows[0].method, suite.rows[0].overrides) == {"generator"}
    (job,), populations = plan_jobs(suite, history_store)
    assert dict(job.config) == {"steps": 2, **lora, "history_budget": 512}  # the rows' budget
    assert LoraTrainConfig.from_mapping(job.config).key_variant == "history=rag-bm25,k=4"
    split, _ = make_split(history_store, TASK, kind="user", n_users=1, seed=0)
    held_out = {u for u, _ in split.queries}
    assert held_out and not held_out & set(populations[TASK])
    ctx = TrainContext(history_store, None, None, users=list(populations[TASK]))  # type: ignore[arg-type]
    rows, users = training_rows(job, ctx, LoraTrainConfig.from_mapping(job.config))
    assert set(users) == set(populations[TASK]) == {r.user_id for r in rows}
    for u in held_out:
        assert not any(u in _prompt(r) for r in rows)
