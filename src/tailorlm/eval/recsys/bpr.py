"""The top-k recommendation anchors: a RecBole-style split with most-popular and Cornac's BPR trained on it.

:func:`prepare_recommendation` builds a :class:`RecSetup` once (split, popularity,
BPR factors chosen by early stopping on valid MRR@10) so several
:func:`tailorlm.eval.recsys.recommend.recommendation` calls, e.g. a grid of
re-rankers, share one trained BPR. Cornac is imported inside functions.

Not here: the test-time evaluation and re-ranking (:mod:`tailorlm.eval.recsys.recommend`)
and hyper-parameter search beyond early stopping on the validation split.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tailorlm.eval.metrics import reciprocal_rank
from tailorlm.eval.recsys.data import load_ratings
from tailorlm.eval.recsys.splits import RECBOLE_PROTOCOL, Order, recbole_split

if TYPE_CHECKING:
    from tailorlm.data import Store

__all__ = ["BPR_DEFAULTS", "RecSetup", "prepare_recommendation", "top_k"]

#: BPR as in RecBole's ``BPR.yaml`` (64 factors, up to 300 epochs, early stopping on valid MRR@10),
#: trained with Cornac's SGD instead of Adam; lr and regularization chosen on the validation split.
BPR_DEFAULTS: dict[str, Any] = {
    "k": 64,
    "learning_rate": 0.01,
    "lambda_reg": 0.01,
    "max_epochs": 300,
    "eval_every": 10,
    "patience": 5,  # evaluations without improvement (50 epochs) before stopping
}


@dataclass
class RecSetup:
    """One RecBole-style split of the interactions and the models trained on it.

    Built by :func:`prepare_recommendation`; pass it to several ``recommendation``
    calls (e.g. every re-ranker in a grid) so BPR is trained once.
    """

    users: list[str]  # user index -> user id
    items: list[str]  # item index -> item id (every item with an interaction)
    train: dict[int, np.ndarray]  # user index -> item indices
    valid: dict[int, np.ndarray]
    test: dict[int, np.ndarray]
    held_out: dict[str, tuple[str, ...]]  # user id -> interaction ids in valid or test (never shown to rerankers)
    popularity: np.ndarray  # train interactions per item
    bpr_user: np.ndarray  # (n_users, k) factors
    bpr_item: np.ndarray  # (n_items, k)
    bpr_bias: np.ndarray  # (n_items,)
    info: dict[str, Any] = field(default_factory=dict)  # protocol, params, epochs, counts

    def bpr_scores(self, u: np.ndarray) -> np.ndarray:
        return self.bpr_user[u] @ self.bpr_item.T + self.bpr_bias

    def mask(self, u: np.ndarray, scores: np.ndarray, *, phase: Literal["valid", "test"]) -> np.ndarray:
        """Set the items the user must not be recommended in ``phase`` to -inf (RecBole's history mask)."""
        scores = scores.astype(float, copy=True)
        for row, uu in enumerate(u):
            scores[row, self.train[uu]] = -np.inf
            if phase == "test":
                scores[row, self.valid[uu]] = -np.inf
        return scores


def prepare_recommendation(
    store: Store,
    *,
    seed: int = 0,
    order: Order = "RO",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    namespace: str = "ml-100k",
    bpr: Mapping[str, Any] | None = None,
) -> RecSetup:
    """Split every user's interactions 80/10/10 (RecBole ``RS``, grouped by user) and train BPR.

    ``order="RO"`` (RecBole's default) shuffles the interactions with ``seed`` before
    splitting; ``"TO"`` splits each user's interactions in time order (test = latest).
    BPR (:data:`BPR_DEFAULTS`, overridable with ``bpr``) is trained on train, evaluated
    on valid every ``eval_every`` epochs, and the factors with the best valid MRR@10
    are kept (RecBole's ``valid_metric``).
    """
    start = time.perf_counter()
    r = load_ratings(store, namespace)
    s = recbole_split(r, seed=seed, order=order, ratios=ratios)
    popularity = np.zeros(len(s.items))
    for its in s.train.values():
        popularity[its] += 1
    cfg = {**BPR_DEFAULTS, **(bpr or {})}
    setup = RecSetup(
        users=s.users,
        items=s.items,
        train=s.train,
        valid=s.valid,
        test=s.test,
        held_out=s.held_out,
        popularity=popularity,
        bpr_user=np.zeros((0, 0)),
        bpr_item=np.zeros((0, 0)),
        bpr_bias=np.zeros(0),
    )
    epochs, valid_mrr = _train_bpr(setup, cfg, seed)
    setup.info = {
        "protocol": {**RECBOLE_PROTOCOL, "eval_args": {**RECBOLE_PROTOCOL["eval_args"], "order": order}},
        "seed": seed,
        "ratios": list(ratios),
        "namespace": namespace,
        "n_users": len(s.users),
        "n_items": len(s.items),
        "n_train": int(sum(len(v) for v in s.train.values())),
        "n_valid": int(sum(len(v) for v in s.valid.values())),
        "n_test": int(sum(len(v) for v in s.test.values())),
        "duplicates_dropped": r.duplicates,
        "bpr": {"model": "cornac.models.BPR", "params": cfg, "best_epoch": epochs, "valid_mrr@10": valid_mrr},
        "seconds": time.perf_counter() - start,
    }
    return setup


def _train_bpr(setup: RecSetup, cfg: Mapping[str, Any], seed: int) -> tuple[int, float]:
    """Cornac BPR in chunks of ``eval_every`` epochs, keeping the factors with the best valid MRR@10."""
    from cornac.data import Dataset
    from cornac.models import BPR

    # Every user and item gets an index, as in RecBole: items seen only in valid/test keep
    # their random initial factors and are still ranked.
    uid_map = OrderedDict((u, n) for n, u in enumerate(setup.users))
    iid_map = OrderedDict((i, n) for n, i in enumerate(setup.items))
    data = [(setup.users[u], setup.items[i], 1.0) for u, its in setup.train.items() for i in its]
    train_set = Dataset.build(data, fmt="UIR", global_uid_map=uid_map, global_iid_map=iid_map, seed=seed)
    if train_set.num_items != len(setup.items) or train_set.num_users != len(setup.users):
        raise RuntimeError("Cornac re-indexed users or items; the split's indices would not match")
    eval_users = np.array(sorted(u for u, v in setup.valid.items() if len(v)))
    params: dict[str, np.ndarray] | None = None
    best: tuple[float, int, dict[str, np.ndarray]] = (-1.0, 0, {})
    epoch, stale = 0, 0
    while epoch < cfg["max_epochs"] and stale < cfg["patience"]:
        chunk = min(cfg["eval_every"], cfg["max_epochs"] - epoch)
        model = BPR(
            k=cfg["k"],
            max_iter=chunk,
            learning_rate=cfg["learning_rate"],
            lambda_reg=cfg["lambda_reg"],
            seed=seed + epoch,  # a fixed seed also makes Cornac single-threaded, hence deterministic
            init_params=params,
            verbose=False,
        ).fit(train_set)
        epoch += chunk
        params = {"U": model.u_factors, "V": model.i_factors, "Bi": model.i_biases}
        setup.bpr_user, setup.bpr_item, setup.bpr_bias = params["U"], params["V"], params["Bi"]
        top = top_k(setup.mask(eval_users, setup.bpr_scores(eval_users), phase="valid"), 10)
        mrr = float(np.mean([reciprocal_rank(setup.valid[u], row) for u, row in zip(eval_users, top, strict=True)]))
        if mrr > best[0]:
            best, stale = (mrr, epoch, {k: v.copy() for k, v in params.items()}), 0
        else:
            stale += 1
    setup.bpr_user, setup.bpr_item, setup.bpr_bias = best[2]["U"], best[2]["V"], best[2]["Bi"]
    return best[1], best[0]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the k highest scores, best first; ties broken by the lower index."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    order = np.lexsort((part, -scores[rows, part]), axis=1)
    return part[rows, order]
