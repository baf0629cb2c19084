"""MovieLens rows of the harness: ranking metrics by hand, leakage-free splits, the anchors on real ML-100K.

Pure-logic tests run on a small synthetic catalogue; the real-data tests load ML-100K
once per module (~25 s, skipped with the reason when ../shared/data is absent) and
train with few epochs; the model test uses the packaged SmolLM2.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tailorlm.data import Interaction, Item, Store, TaskExample
from tailorlm.eval.recsys import (
    RECBOLE_PROTOCOL,
    LLMReranker,
    prepare_recommendation,
    ranking_metrics,
    rating_anchor,
    rating_heldout,
    recommendation,
)
from tailorlm.eval.recsys.bpr import top_k
from tailorlm.eval.recsys.splits import _recbole_counts
from tailorlm.personalize.base import eligible_history

NS = "toy"
N_USERS, N_ITEMS = 12, 30


def _title(j: int) -> str:
    return f"Movie {j:02d}"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """12 users x 20 of 30 items, ratings 1-5 at distinct times, with rating examples like the loader's."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('toy') / 's.db'}")
    rng = random.Random(7)
    records: list = [
        Item(item_id=f"{NS}:{j}", title=_title(j), attributes={"year": 1990 + j, "genres": ["Drama"]})
        for j in range(N_ITEMS)
    ]
    for u in range(N_USERS):
        for n, j in enumerate(rng.sample(range(N_ITEMS), 20)):
            ts, rating = 1000 * u + 10 * n, float(rng.randint(1, 5))
            records.append(
                Interaction(user_id=f"{NS}:{u}", item_id=f"{NS}:{j}", interaction="rating", value=rating, timestamp=ts)
            )
            records.append(
                TaskExample(
                    task="movielens-rating",
                    example_id=f"rating:{j}:{ts}",
                    user_id=f"{NS}:{u}",
                    input=f"{_title(j)} ({1990 + j}). Genres: Drama.",
                    target=str(int(rating)),
                    timestamp=ts,
                    metadata={"item_id": f"{NS}:{j}"},
                )
            )
    store.add(records)
    yield store
    store.close()


def _ratings(store: Store) -> dict[tuple[str, str], Interaction]:
    return {
        (i.user_id, i.interaction_id): i
        for u in store.list_users()
        for i in store.get_interactions(user_id=u, interaction="rating")
    }


# -- metrics ---------------------------------------------------------------------------------


def test_ranking_metrics_hand_worked() -> None:
    """relevant {a, c}; ranked b, a, d, c.

    k=3: one hit, a at rank 2. DCG = 1/log2(3) = .6309; the ideal list has min(2, 3) = 2
    hits: IDCG = 1/log2(2) + 1/log2(3) = 1.6309, NDCG = .3869. HR 1, MRR 1/2 (first hit
    at rank 2), recall 1/2 (of 2 relevant), precision 1/3 (of 3 shown).
    k=4: c also hits at rank 4: DCG = .6309 + 1/log2(5) = 1.0616, NDCG = .6509, recall 1,
    precision 2/4, MRR still 1/2.
    """
    m3 = ranking_metrics(["a", "c"], ["b", "a", "d", "c"], k=3)
    assert m3["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m3["ndcg@3"] == pytest.approx(0.3869, abs=1e-4)
    assert (m3["hit@3"], m3["mrr@3"], m3["recall@3"], m3["precision@3"]) == pytest.approx((1, 0.5, 0.5, 1 / 3))
    m4 = ranking_metrics(["a", "c"], ["b", "a", "d", "c"], k=4)
    assert m4["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert m4["ndcg@4"] == pytest.approx(0.6509, abs=1e-4)
    assert (m4["hit@4"], m4["mrr@4"], m4["recall@4"], m4["precision@4"]) == pytest.approx((1, 0.5, 1, 0.5))


def test_ranking_metrics_miss_and_perfect() -> None:
    """No hit in the top k scores 0 everywhere (RecBole's MRR@k too); a perfect list scores 1 on NDCG/HR/MRR."""
    miss = ranking_metrics(["a"], ["x", "y", "a"], k=2)
    assert all(v == 0.0 for v in miss.values())
    perfect = ranking_metrics(["a", "b"], ["a", "b", "x"], k=10)
    assert (perfect["ndcg@10"], perfect["hit@10"], perfect["mrr@10"], perfect["recall@10"]) == (1.0, 1.0, 1.0, 1.0)
    assert perfect["precision@10"] == pytest.approx(0.2)  # RecBole divides by k, not by the list length


@pytest.mark.parametrize(
    ("relevant", "ranked", "k"),
    [(["a"], ["a"], 0), ([], ["a"], 10)],
    ids=["k-zero", "no-relevant-items"],
)
def test_ranking_metrics_errors(relevant: list[str], ranked: list[str], k: int) -> None:
    with pytest.raises(ValueError):
        ranking_metrics(relevant, ranked, k=k)


def test_recbole_split_counts_and_top_k_ties() -> None:
    """RecBole rounds valid/test down and gives the rest to train, but never leaves a part empty if it can."""
    assert _recbole_counts(20, (0.8, 0.1, 0.1)) == [16, 2, 2]
    assert _recbole_counts(25, (0.8, 0.1, 0.1)) == [21, 2, 2]
    assert _recbole_counts(5, (0.8, 0.1, 0.1)) == [3, 1, 1]
    assert _recbole_counts(1, (0.8, 0.1, 0.1)) == [1, 0, 0]
    scores = np.array([[1.0, 3.0, 3.0, -np.inf], [0.0, 0.0, 0.0, 5.0]])
    assert top_k(scores, 3).tolist() == [[1, 2, 0], [3, 0, 1]]


# -- splits without leakage ---------------------------------------------------------------------


@pytest.mark.parametrize("split", ["random", "temporal"])
def test_rating_split_has_no_leakage(toy: Store, split: str) -> None:
    out = rating_anchor(toy, split=split, seed=3, namespace=NS, params={"max_iter": 2})
    everything = _ratings(toy)
    test_keys = set(zip(out["user_ids"], out["interaction_ids"], strict=True))
    assert len(test_keys) == out["n_test"] == round(0.2 * len(everything))
    train = [i for key, i in everything.items() if key not in test_keys]
    assert len(train) == out["n_train"]
    train_pairs = {(i.user_id, i.item_id) for i in train}
    assert not train_pairs & set(zip(out["user_ids"], out["item_ids"], strict=True))
    if split == "temporal":  # every user's held-out ratings come after all their training ones
        for user in {u for u, _ in test_keys}:
            last_train = max(i.timestamp for i in train if i.user_id == user)
            assert all(everything[(user, k)].timestamp > last_train for u, k in test_keys if u == user)
    assert math.sqrt(np.mean(out["sq_errors"])) == pytest.approx(out["rmse"])
    assert np.mean(out["abs_errors"]) == pytest.approx(out["mae"])
    # The LLM side gets the same held-out ratings, in the same order, and cannot see any of them.
    held = rating_heldout(toy, split=split, seed=3, namespace=NS)
    assert [h.interaction_id for h in held] == out["interaction_ids"]
    for h in held[:10]:
        assert h.example_id == f"rating:{h.item_id.split(':')[1]}:{h.timestamp}"
        seen = {e.source_id for e in eligible_history(toy, h.user_id, h.query())}
        assert seen == {k for (u, k) in everything if u == h.user_id} - set(h.held_out)
    sample = rating_heldout(toy, split=split, seed=3, namespace=NS, n=7, sample_seed=1)
    assert len(sample) == 7 and {h.interaction_id for h in sample} <= set(out["interaction_ids"])


@pytest.mark.parametrize("order", ["RO", "TO"])
def test_recommendation_split_has_no_leakage(toy: Store, order: str) -> None:
    setup = prepare_recommendation(toy, seed=1, order=order, namespace=NS, bpr={"max_epochs": 2, "eval_every": 1})
    everything = _ratings(toy)
    for uu, user in enumerate(setup.users):
        parts = [[setup.items[i] for i in part[uu]] for part in (setup.train, setup.valid, setup.test)]
        assert [len(p) for p in parts] == _recbole_counts(20, (0.8, 0.1, 0.1))
        assert (
            not set(parts[0]) & set(parts[1])
            and not set(parts[0]) & set(parts[2])
            and not set(parts[1]) & set(parts[2])
        )
        mine = {i.item_id: i for (u, _), i in everything.items() if u == user}
        assert sorted(parts[0] + parts[1] + parts[2]) == sorted(mine)
        assert set(setup.held_out[user]) == {mine[i].interaction_id for i in parts[1] + parts[2]}
        if order == "TO":
            assert max(mine[i].timestamp for i in parts[0]) < min(mine[i].timestamp for i in parts[1] + parts[2])
    assert setup.info["protocol"]["eval_args"]["order"] == order
    # Test-time ranking never recommends what the user already has in train or valid.
    out = recommendation(toy, setup=setup, k=3, candidates=5)
    for name in ("most-popular", "bpr"):
        for user, top in zip(out["users"], out["models"][name]["top"], strict=True):
            uu = setup.users.index(user)
            assert len(top) == 3
            assert not {setup.items[i] for i in [*setup.train[uu], *setup.valid[uu]]} & set(top)
    u = np.arange(len(setup.users))
    masked = setup.mask(u, setup.bpr_scores(u), phase="test")
    for uu in u:
        assert np.isneginf(masked[uu, setup.train[uu]]).all() and np.isneginf(masked[uu, setup.valid[uu]]).all()
        assert np.isfinite(masked[uu, setup.test[uu]]).all()


def test_a_rerating_is_one_interaction_hidden_with_all_its_ids(tmp_path: Path) -> None:
    """Item 0 rated at t=10 and again at t=100 (the latest): it counts once, lands in test under the
    temporal orders, and both its interaction ids are hidden from the methods."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    ratings = [(j, 10 + j) for j in range(10)] + [(0, 100)]
    store.add(
        Interaction(user_id=f"{NS}:a", item_id=f"{NS}:{j}", interaction="rating", value=4.0, timestamp=ts)
        for j, ts in ratings
    )
    both = {i.interaction_id for i in store.get_interactions(user_id=f"{NS}:a") if i.item_id == f"{NS}:0"}
    assert len(both) == 2
    setup = prepare_recommendation(store, order="TO", namespace=NS, bpr={"max_epochs": 1, "eval_every": 1})
    assert [setup.items[i] for i in setup.test[0]] == [f"{NS}:0"] and setup.info["duplicates_dropped"] == 1
    assert sum(len(p[0]) for p in (setup.train, setup.valid, setup.test)) == 10
    assert both <= set(setup.held_out[f"{NS}:a"])
    held = rating_heldout(store, split="temporal", namespace=NS)
    assert f"{NS}:0" in {h.item_id for h in held} and all(both <= set(h.held_out) for h in held)
    store.close()


# -- re-ranking -------------------------------------------------------------------------------------


class TitleScorer:
    """Fake ``score_choices``: "Yes" for the conversations that mention a favourite title, and
    it records every prompt so tests can check what the re-ranker showed the model."""

    name = "title-scorer"

    def __init__(self, favourites: Sequence[str]) -> None:
        self.favourites = list(favourites)
        self.prompts: list[list[dict[str, str]]] = []

    def score_choices(self, batch, choices, *, adapter=None) -> np.ndarray:
        self.prompts.extend(batch)
        yes = [any(f in conv[-1]["content"] for f in self.favourites) for conv in batch]
        return np.log(np.array([[0.9, 0.1] if y else [0.2, 0.8] for y in yes]))


def test_llm_reranker_orders_by_yes_and_hides_held_out_items(toy: Store) -> None:
    setup = prepare_recommendation(toy, seed=0, namespace=NS, bpr={"max_epochs": 2, "eval_every": 1})
    scorer = TitleScorer([])
    rr = LLMReranker(toy, scorer, method_spec="identity", liked=20, liked_min=1)
    out = recommendation(toy, setup=setup, k=3, candidates=8, rerank=rr, n_users=4, seed=0)
    assert set(out["models"]) == {"most-popular", "bpr", "rerank", "random-rerank"}
    assert len(out["users"]) == 4 and all(len(v) == 4 for v in out["models"]["rerank"]["per_user"].values())
    for name in ("rerank", "random-rerank", "bpr"):  # re-ranking cannot find what the candidates lack
        hits = out["models"][name]["per_user"]["hit@3"]
        assert all(h <= c for h, c in zip(hits, out["candidates"]["per_user"]["hit@8"], strict=True))
    # Prompts list the user's training movies only: no held-out (valid/test) title of that user appears.
    titles = {it.item_id: it.title for it in toy.get_items(setup.items).values()}
    for user in out["users"]:
        uu = setup.users.index(user)
        system = rr.messages(user, rr.records_[user]["candidates"], held_out=setup.held_out[user])[0][0]["content"]
        assert all(titles[setup.items[i]] in system for i in setup.train[uu])
        assert not any(f"{titles[setup.items[i]]} ->" in system for i in [*setup.valid[uu], *setup.test[uu]])
    # With a favourite among the candidates, it moves to the top and the CF order breaks ties.
    user = out["users"][0]
    cands = rr.records_[user]["candidates"]
    fav = TitleScorer([titles[cands[5]]])
    fav_rr = LLMReranker(toy, fav, method_spec="identity", liked=0)
    assert fav_rr(user, cands, held_out=setup.held_out[user]) == [cands[5], *cands[:5], *cands[6:]]
    assert fav_rr.records_[user]["scoring"] == "score_choices"  # a scorer without a local model


def test_recommendation_rejects_a_rerank_that_is_not_a_permutation(toy: Store) -> None:
    setup = prepare_recommendation(toy, seed=0, namespace=NS, bpr={"max_epochs": 1, "eval_every": 1})
    with pytest.raises(ValueError, match="permutation"):
        recommendation(toy, setup=setup, k=2, candidates=4, rerank=lambda u, c, held_out=(): c[:2], n_users=1)
    with pytest.raises(ValueError, match="candidates"):
        recommendation(toy, setup=setup, k=5, candidates=4)


# -- real ML-100K --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml100k(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    from tailorlm.data.loaders import load_dataset

    path = shared_data / "movielens-100k"
    if not path.is_dir():
        pytest.skip(f"MovieLens-100K not found at {path}")
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('ml') / 's.db'}")
    load_dataset(store, "movielens", path)
    yield store
    store.close()


@pytest.mark.data
def test_svd_anchor_on_ml100k(ml100k: Store) -> None:
    """Biased MF on a random 80/20 split lands near the published ~0.93 and beats the mean predictors."""
    out = rating_anchor(ml100k, split="random", seed=0)
    assert (out["n_train"], out["n_test"]) == (80_000, 20_000)
    assert 0.85 < out["rmse"] < 1.0 and 0.65 < out["mae"] < 0.8
    assert all(out["rmse"] < b["rmse"] for b in out["baselines"].values())
    assert len(out["abs_errors"]) == len(out["sq_errors"]) == len(out["interaction_ids"]) == 20_000


@pytest.mark.data
def test_bpr_beats_most_popular_on_ml100k(ml100k: Store) -> None:
    """RecBole's protocol on the real data with a short BPR run (20 epochs at a higher rate)."""
    setup = prepare_recommendation(ml100k, seed=0, bpr={"max_epochs": 20, "learning_rate": 0.05})
    assert (setup.info["n_users"], setup.info["n_items"]) == (943, 1682)
    assert setup.info["n_train"] + setup.info["n_valid"] + setup.info["n_test"] == 100_000
    out = recommendation(ml100k, setup=setup)
    assert len(out["users"]) == 943 and out["protocol"]["eval_args"] == RECBOLE_PROTOCOL["eval_args"]
    bpr, pop = out["models"]["bpr"]["metrics"], out["models"]["most-popular"]["metrics"]
    assert bpr["ndcg@10"] > pop["ndcg@10"] and bpr["hit@10"] > pop["hit@10"]
    assert 0.1 < pop["ndcg@10"] < 0.3 and 0.4 < pop["hit@10"] < 0.8
    assert len(out["models"]["bpr"]["per_user"]["ndcg@10"]) == 943


@pytest.mark.model
def test_shared_prefix_scores_equal_score_choices(smollm, toy: Store) -> None:
    """The prefix-cached scoring is an optimization only: same log-probabilities as score_choices."""
    if smollm.adapters:
        pytest.skip("another test left adapters loaded on the shared model")
    setup = prepare_recommendation(toy, seed=0, namespace=NS, bpr={"max_epochs": 1, "eval_every": 1})
    rr = LLMReranker(toy, smollm, method_spec="identity", liked=3, batch_size=2)
    user = setup.users[0]
    cands = [setup.items[i] for i in [*setup.test[0][:2], *setup.valid[0][:1]]]
    ranked = rr(user, cands, held_out=setup.held_out[user])  # scored on the shared-prefix path
    assert sorted(ranked) == sorted(cands) and rr.records_[user]["scoring"] == "shared-prefix"
    fast = rr.records_[user]["scores"]
    reference = smollm.score_choices(rr.messages(user, cands, held_out=setup.held_out[user]), ["Yes", "No"])
    np.testing.assert_allclose(fast, reference[:, 0] - reference[:, 1], atol=1e-4)
