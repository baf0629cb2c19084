"""TALLRec-style adapters: training questions are the re-ranker's own, from training users only,
answered by their valid interactions, never quoting a held-out item; a few real steps move the loss
and the adapter re-ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_recsys import NS, TitleScorer, toy  # noqa: F401  (toy is a fixture)

from tailorlm.data import Store
from tailorlm.eval.recsys import LLMReranker, TallRecConfig, prepare_recommendation, tallrec_rows, train_tallrec
from tailorlm.eval.recsys.bpr import top_k


def _setup(store: Store):  # type: ignore[no-untyped-def]
    return prepare_recommendation(store, seed=0, namespace=NS, bpr={"max_epochs": 2, "eval_every": 1})


def test_rows_are_the_rerankers_questions_answered_by_valid_items(toy: Store) -> None:  # noqa: F811
    setup = _setup(toy)
    rr = LLMReranker(toy, TitleScorer([]), method_spec="identity", liked=20, liked_min=1)
    evaluated = setup.users[:4]
    cfg = TallRecConfig(users=100, positives=2, candidates=8)
    rows = tallrec_rows(setup, rr, exclude_users=evaluated, cfg=cfg)
    assert rows == tallrec_rows(setup, rr, exclude_users=evaluated, cfg=cfg)  # seeded
    assert rows and not {r.user_id for r in rows} & set(evaluated)
    titles = {it.item_id: it.title for it in toy.get_items(setup.items).values()}
    for r in rows:
        uu = setup.users.index(r.user_id)
        item = r.example_id.removeprefix(f"tallrec:{r.user_id}:")
        valid = {setup.items[i] for i in setup.valid[uu]}
        assert r.target == ("Yes" if item in valid else "No")
        assert item not in {setup.items[i] for i in setup.train[uu]}  # a question is about an unseen item
        system, question = r.messages[0][1], r.messages[-1][1]
        assert titles[item] in question
        for i in [*setup.valid[uu], *setup.test[uu]]:  # held-out interactions are never quoted
            assert f"{titles[setup.items[i]]} ->" not in system
        assert r.messages == tuple(
            (m["role"], m["content"]) for m in rr.messages(r.user_id, [item], held_out=setup.held_out[r.user_id])[0]
        )
    for r in rows:  # every question (Yes ones too) is about one of the user's BPR candidates, as at test time
        uu = setup.users.index(r.user_id)
        cands = top_k(setup.mask(np.asarray([uu]), setup.bpr_scores(np.asarray([uu])), phase="valid"), 8)[0]
        assert r.example_id.removeprefix(f"tallrec:{r.user_id}:") in {setup.items[i] for i in cands}
    answers = [r.target for r in rows]
    assert answers.count("Yes") == answers.count("No")  # balanced per user
    with pytest.raises(ValueError, match="no training user"):
        tallrec_rows(setup, rr, exclude_users=setup.users, cfg=cfg)
    with pytest.raises(ValueError, match=">= 1"):
        TallRecConfig(users=0)


@pytest.mark.model
def test_a_few_steps_move_the_loss_and_the_adapter_reranks(smollm, toy: Store, tmp_path: Path) -> None:  # noqa: F811
    setup = _setup(toy)
    rr = LLMReranker(toy, smollm, method_spec="identity", liked=5, liked_min=1)
    cfg = TallRecConfig(users=6, positives=1, candidates=8, steps=6, batch_size=2, lr=1e-3, max_length=512)
    rows = tallrec_rows(setup, rr, exclude_users=setup.users[:2], cfg=cfg)
    report = train_tallrec(smollm, rows, tmp_path / "tallrec", cfg=cfg)
    assert report["examples"] == len(rows) and len(report["loss_curve"]) == 6
    assert report["loss_curve"][-1] < report["loss_curve"][0]
    assert (tmp_path / "tallrec" / "adapter_config.json").is_file()
    name = "tallrec-test"
    smollm.add_adapter(name, tmp_path / "tallrec")
    try:
        tuned = LLMReranker(toy, smollm, method_spec="identity", liked=5, liked_min=1, adapter=name)
        user = setup.users[0]
        cands = [setup.items[i] for i in setup.test[0][:3]] + [setup.items[i] for i in setup.valid[0][:1]]
        ranked = tuned(user, cands, held_out=setup.held_out[user])
        assert sorted(ranked) == sorted(cands) and tuned.records_[user]["scoring"] == "shared-prefix"
        scores = tuned.records_[user]["scores"]
        convs = tuned.messages(user, cands, held_out=setup.held_out[user])
        with_adapter = smollm.score_choices(convs, ["Yes", "No"], adapter=name)
        plain = smollm.score_choices(convs, ["Yes", "No"])
        # the prefix-cached path answers exactly as score_choices with the adapter, not as the base model
        assert scores == pytest.approx((with_adapter[:, 0] - with_adapter[:, 1]).tolist(), abs=1e-4)
        assert scores != pytest.approx((plain[:, 0] - plain[:, 1]).tolist(), abs=1e-4)
        base = LLMReranker(toy, smollm, method_spec="identity", liked=5, liked_min=1)
        base(user, cands, held_out=setup.held_out[user])  # adapters loaded, none asked for: the base model
        assert base.records_[user]["scores"] == pytest.approx((plain[:, 0] - plain[:, 1]).tolist(), abs=1e-4)
    finally:
        smollm.delete_adapter(name)
    with pytest.raises(ValueError, match="not loaded"):
        LLMReranker(toy, smollm, method_spec="identity", adapter="nope")
