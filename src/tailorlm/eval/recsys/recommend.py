"""Top-k recommendation under RecBole's protocol: most-popular, BPR, and BPR's candidates re-ranked.

:func:`recommendation` ranks every evaluated user's unseen items with the anchors of a
:class:`~tailorlm.eval.recsys.bpr.RecSetup`, optionally re-orders BPR's top candidates
with any :class:`Reranker` (beside a random re-ranking of the same candidates, the
no-information control), and scores every list with
:func:`tailorlm.eval.metrics.ranking_metrics`, keeping per-user values.

Not here: training (:mod:`tailorlm.eval.recsys.bpr`), the LLM re-ranker itself
(:mod:`tailorlm.eval.recsys.rerank`), and bootstrap intervals, paired tests and tables
(the harness computes them from the per-user lists returned here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tailorlm.eval.metrics import ranking_metrics
from tailorlm.eval.recsys.bpr import RecSetup, prepare_recommendation, top_k
from tailorlm.eval.recsys.splits import RECBOLE_PROTOCOL

if TYPE_CHECKING:
    from tailorlm.data import Store

__all__ = ["Reranker", "evaluated_users", "recommendation"]


class Reranker(Protocol):
    """Reorders one user's candidates, best first.

    ``held_out`` are the user's interaction ids in valid and test: whatever the
    re-ranker reads about the user must exclude them (pass them as a Query's
    ``exclude_doc_ids``), or the test items leak into the prompt.
    """

    def __call__(self, user_id: str, candidates: Sequence[str], *, held_out: Sequence[str] = ()) -> list[str]: ...


def recommendation(
    store: Store,
    *,
    n_users: int | None = None,
    k: int = 10,
    candidates: int = 20,
    rerank: Reranker | Callable[..., list[str]] | None = None,
    seed: int = 0,
    setup: RecSetup | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Top-k recommendation under RecBole's protocol: most-popular, BPR, and BPR candidates re-ranked.

    Args:
        store: a store with MovieLens loaded.
        n_users: evaluate a seeded sample of this many users (None: every user with test items).
            Training always uses every user's train interactions.
        k: the cut-off of the metrics.
        candidates: how many BPR top items the re-ranker reorders (its hit@k is bounded by
            the candidates' hit rate, reported as ``candidates``).
        rerank: ``rerank(user_id, candidate_item_ids, held_out=...) -> ordered ids`` (see
            :class:`Reranker`); None skips re-ranking. A random re-ranking of the same
            candidates is reported beside it as the no-information control.
        seed: the split's and BPR's seed (unless ``setup`` is given), the user sample's and
            the random re-ranking's.
        setup: a :class:`RecSetup` from :func:`prepare_recommendation` to reuse.
        progress: called with (done, total) after each re-ranked user.

    Returns:
        ``protocol``, ``k``, ``seed``, ``users`` (evaluated user ids), ``models`` (name ->
        ``metrics`` mean values, ``per_user`` lists aligned with ``users`` and ``top``, each
        user's top-k item ids; names: ``most-popular``, ``bpr``, and with a re-ranker
        ``rerank`` and ``random-rerank``),
        ``candidates`` (None without a re-ranker, else ``n``, ``metrics`` with
        recall@n and hit@n, ``per_user``), ``setup`` (split counts, BPR params and
        best epoch) and ``seconds``.
    """
    start = time.perf_counter()
    if k < 1 or candidates < k:
        raise ValueError(f"need 1 <= k <= candidates, got k={k}, candidates={candidates}")
    setup = setup or prepare_recommendation(store, seed=seed)
    u = evaluated_users(setup, n_users, seed)
    ids = np.array(setup.items, dtype=object)
    relevant = [ids[setup.test[uu]].tolist() for uu in u]

    pop = setup.mask(u, np.tile(setup.popularity, (len(u), 1)), phase="test")
    bpr_top = top_k(setup.mask(u, setup.bpr_scores(u), phase="test"), candidates)
    lists: dict[str, list[list[str]]] = {
        "most-popular": [ids[row].tolist() for row in top_k(pop, k)],
        "bpr": [ids[row[:k]].tolist() for row in bpr_top],
    }
    cand = None
    if rerank is not None:
        cand_lists = [ids[row].tolist() for row in bpr_top]
        lists["rerank"], lists["random-rerank"] = _rerank_lists(setup, u, cand_lists, rerank, seed, progress)
        cand = _candidate_bound(relevant, cand_lists, candidates)
    return {
        "protocol": setup.info.get("protocol", RECBOLE_PROTOCOL),
        "k": k,
        "seed": setup.info.get("seed", seed),
        "users": [setup.users[uu] for uu in u],
        "models": {name: _scored(relevant, rows, k) for name, rows in lists.items()},
        "candidates": cand,
        "setup": {key: v for key, v in setup.info.items() if key != "protocol"},
        "seconds": time.perf_counter() - start,
    }


def evaluated_users(setup: RecSetup, n_users: int | None, seed: int) -> np.ndarray:
    """Indices of the users with test items, or a seeded sample of ``n_users`` of them, sorted."""
    eligible = sorted(u for u, v in setup.test.items() if len(v))
    if n_users is not None and n_users < len(eligible):
        eligible = sorted(np.random.default_rng(seed).choice(eligible, size=n_users, replace=False).tolist())
    return np.array(eligible, dtype=np.int64)


def _rerank_lists(
    setup: RecSetup,
    u: np.ndarray,
    cand_lists: list[list[str]],
    rerank: Reranker | Callable[..., list[str]],
    seed: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[list[str]], list[list[str]]]:
    """Each user's candidates ordered by ``rerank`` and, as the control, by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    reranked: list[list[str]] = []
    shuffled: list[list[str]] = []
    for n, (uu, cands) in enumerate(zip(u, cand_lists, strict=True)):
        uid = setup.users[uu]
        out = list(rerank(uid, list(cands), held_out=setup.held_out[uid]))
        if sorted(out) != sorted(cands):
            raise ValueError(f"rerank must return a permutation of the {len(cands)} candidates for {uid}")
        reranked.append(out)
        shuffled.append([cands[i] for i in rng.permutation(len(cands))])
        if progress:
            progress(n + 1, len(u))
    return reranked, shuffled


def _candidate_bound(relevant: list[list[str]], cand_lists: list[list[str]], n: int) -> dict[str, Any]:
    """Recall@n and hit@n of the whole candidate lists: what no re-ordering of them can exceed."""
    per = [ranking_metrics(rel, cands, k=n) for rel, cands in zip(relevant, cand_lists, strict=True)]
    names = (f"recall@{n}", f"hit@{n}")
    return {
        "n": n,
        "metrics": {m: float(np.mean([p[m] for p in per])) for m in names},
        "per_user": {m: [p[m] for p in per] for m in names},
    }


def _scored(relevant: list[list[str]], rows: list[list[str]], k: int) -> dict[str, Any]:
    """One model's mean metrics, per-user metrics and top-k lists."""
    per = [ranking_metrics(rel, row, k=k) for rel, row in zip(relevant, rows, strict=True)]
    return {
        "metrics": {m: float(np.mean([p[m] for p in per])) for m in per[0]},
        "per_user": {m: [p[m] for p in per] for m in per[0]},
        "top": [row[:k] for row in rows],
    }
