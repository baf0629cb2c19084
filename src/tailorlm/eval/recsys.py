"""MovieLens-100K rows of the harness: rating prediction and top-k recommendation, each with a classic anchor.

A personalization number means little without the classic method for the same task
beside it, measured on the same held-out data. This module provides those anchors
from a maintained library (Cornac) and the hooks that put tailorlm methods on the
same examples:

- :func:`rating_anchor`: biased matrix factorization ("SVD", Koren 2008) on a seeded
  random 80/20 split of all ratings, RMSE / MAE with per-example errors.
  :func:`rating_heldout` returns the same held-out ratings as queries for LLM methods.
- :func:`recommendation`: RecBole's default general-recommendation protocol (see
  :data:`RECBOLE_PROTOCOL`) with BPR and most-popular baselines, and the BPR top
  candidates re-ranked by any callable (:func:`llm_reranker` is the default LLM one),
  with per-user values.

Why Cornac: it is maintained (3.0.1), ships cp311 wheels that work with numpy 2, has
biased MF, BPR, most-popular and the ranking metrics, and does not pull torch.
scikit-surprise builds from source and ``implicit`` has no rating model. Importing
Cornac takes a few seconds, so it is imported inside functions.

Deliberately not here: bootstrap intervals, paired tests and tables (the harness
computes them from the per-example / per-user lists returned here), and
hyper-parameter search beyond early stopping on the validation split.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from tailorlm.personalize.base import ContextBlock, ContextItem, Contribution, Query, eligible_history

if TYPE_CHECKING:
    from tailorlm.data import Store

__all__ = [
    "BPR_DEFAULTS",
    "RECBOLE_PROTOCOL",
    "SVD_DEFAULTS",
    "HeldOutRating",
    "LLMReranker",
    "RecSetup",
    "Reranker",
    "llm_reranker",
    "prepare_recommendation",
    "ranking_metrics",
    "rating_anchor",
    "rating_heldout",
    "recommendation",
]

#: Surprise's ``SVD`` defaults, which give the often-quoted RMSE ~0.934 on ML-100K (5-fold CV). ``init_std``
#: is Surprise's factor initialization (Cornac's own, 0.01, leaves 20 epochs close to a biases-only model).
SVD_DEFAULTS: dict[str, Any] = {"k": 100, "max_iter": 20, "learning_rate": 0.005, "lambda_reg": 0.02, "init_std": 0.1}

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

#: What RecBole's defaults (``overall.yaml``, ``ml-100k.yaml``, ``BPR.yaml``) prescribe and how we differ.
RECBOLE_PROTOCOL: dict[str, Any] = {
    "name": "RecBole general recommendation defaults",
    "feedback": "implicit: every rating is a positive interaction (no threshold, duplicates none in ML-100K)",
    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
    "ranking": "full ranking over all items; the user's train and valid items are removed before ranking test",
    "metrics": ["recall@k", "mrr@k", "ndcg@k", "hit@k", "precision@k"],
    "valid_metric": "mrr@10",
    "differences": [
        "BPR from Cornac (SGD with item bias) rather than RecBole's PyTorch BPR (Adam, no bias)",
        "validation every eval_every epochs with patience, not every epoch with stopping_step=10",
        "the random order comes from numpy's default_rng(seed), so the split is not RecBole's seed-2020 split",
    ],
}

Split = Literal["random", "temporal"]
Order = Literal["RO", "TO"]


# -- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ratings:
    """All ratings of one namespace as parallel arrays, sorted by (user, time, item)."""

    user: np.ndarray  # str user ids
    item: np.ndarray  # str item ids
    value: np.ndarray  # float ratings
    ts: np.ndarray  # int timestamps (0 when absent)
    iid: np.ndarray  # str interaction ids
    shadowed: dict[tuple[str, str], list[str]]  # (user, item) -> ids of earlier re-ratings that were dropped

    def __len__(self) -> int:
        return len(self.value)

    @property
    def duplicates(self) -> int:
        return sum(len(v) for v in self.shadowed.values())

    def hidden(self, rows: np.ndarray) -> dict[str, list[str]]:
        """Per user, the interaction ids a method must not see when ``rows`` are held out:
        those rows and any dropped earlier rating of the same items."""
        out: dict[str, list[str]] = {}
        for i in rows:
            out.setdefault(self.user[i], []).extend([self.iid[i], *self.shadowed.get((self.user[i], self.item[i]), [])])
        return out


def _load_ratings(store: Store, namespace: str) -> _Ratings:
    """Read every rating of ``namespace``'s users, one user at a time (the store's per-user API)."""
    prefix = f"{namespace}:"
    rows: dict[tuple[str, str], tuple[str, str, float, int, str]] = {}
    shadowed: dict[tuple[str, str], list[str]] = {}
    for uid in store.list_users():
        if not uid.startswith(prefix):
            continue
        for it in store.get_interactions(user_id=uid, interaction="rating"):
            if it.value is None:
                continue
            row = (uid, it.item_id, float(it.value), int(it.timestamp or 0), str(it.interaction_id))
            old = rows.get((uid, it.item_id))
            # A re-rating is one implicit positive, and one item must never sit on both sides of a split:
            # keep the latest rating, and remember the others so they are hidden along with it.
            if old is None or (row[3], row[4]) > (old[3], old[4]):
                rows[(uid, it.item_id)] = row
            if old is not None:
                shadowed.setdefault((uid, it.item_id), []).append(min(old, row, key=lambda x: (x[3], x[4]))[4])
    if not rows:
        raise ValueError(f"no ratings of users '{prefix}*' in the store; load MovieLens first")
    ordered = sorted(rows.values(), key=lambda r: (r[0], r[3], r[1], r[4]))
    cols = list(zip(*ordered, strict=True))
    return _Ratings(
        user=np.array(cols[0], dtype=object),
        item=np.array(cols[1], dtype=object),
        value=np.array(cols[2], dtype=float),
        ts=np.array(cols[3], dtype=np.int64),
        iid=np.array(cols[4], dtype=object),
        shadowed=shadowed,
    )


def _rating_split(r: _Ratings, split: Split, seed: int, test_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test). 'random': a seeded 20% of all ratings; 'temporal': each user's latest 20%."""
    n = len(r)
    if split == "random":
        perm = np.random.default_rng(seed).permutation(n)
        n_test = round(test_ratio * n)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    if split == "temporal":
        train, test = [], []
        for rows in _by_user(r.user, np.arange(n)):  # already time-ordered within a user
            n_test = round(test_ratio * len(rows))
            cut = len(rows) - n_test
            train.append(rows[:cut])
            test.append(rows[cut:])
        return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    raise ValueError(f"split must be 'random' or 'temporal', got {split!r}")


def _by_user(users: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """Split ``order`` into runs of one user each, keeping ``order`` within a user (stable)."""
    order = order[np.argsort(users[order], kind="stable")]
    keys = users[order]
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.split(order, bounds)


# -- rating prediction ------------------------------------------------------------------------


def rating_anchor(
    store: Store,
    *,
    split: Split = "random",
    seed: int = 0,
    test_ratio: float = 0.2,
    namespace: str = "ml-100k",
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Cornac's biased MF ("SVD") trained on the train ratings, scored on the held-out ones.

    Protocol: ``split="random"`` holds out a seeded random 20% of all ratings, the
    setting behind the published ML-100K figures (Surprise's SVD: RMSE .934, MAE .737
    over 5 random folds of 20%); ``"temporal"`` holds out each user's latest 20%
    instead (harder, and the setting LLM methods with time-based history guards
    expect). Users or items absent from train get Cornac's fallback (global mean plus
    the known biases). Predictions are clipped to the 1-5 scale.

    Args:
        store: a store with MovieLens loaded (``load_dataset(store, "movielens", path)``).
        split: 'random' or 'temporal' (see above).
        seed: the split's and the model's seed.
        test_ratio: held-out share.
        namespace: the loader's user / item prefix.
        params: overrides of :data:`SVD_DEFAULTS`.

    Returns:
        ``protocol`` (how the split was made), ``model``, ``params``, ``n_train``, ``n_test``,
        ``rmse``, ``mae``, the per-example lists ``user_ids``, ``item_ids``,
        ``interaction_ids``, ``golds``, ``predictions``, ``abs_errors``, ``sq_errors`` (all
        aligned, in the order of :func:`rating_heldout`), ``baselines`` (global / user /
        item mean, each with rmse and mae) and ``seconds``.

    Example:
        >>> out = rating_anchor(store, split="random", seed=0)  # doctest: +SKIP
        >>> round(out["rmse"], 2)  # doctest: +SKIP
        0.94
    """
    from cornac.data import Dataset
    from cornac.models import SVD

    start = time.perf_counter()
    r = _load_ratings(store, namespace)
    train, test = _rating_split(r, split, seed, test_ratio)
    cfg = {**SVD_DEFAULTS, **(params or {})}
    data = list(zip(r.user[train], r.item[train], r.value[train], strict=True))
    train_set = Dataset.from_uir(data, seed=seed)
    rng = np.random.default_rng(seed)
    init = {  # biases start at zero, as in Surprise
        "U": rng.normal(0.0, cfg["init_std"], (train_set.num_users, cfg["k"])).astype(np.float32),
        "V": rng.normal(0.0, cfg["init_std"], (train_set.num_items, cfg["k"])).astype(np.float32),
    }
    model_cfg = {key: v for key, v in cfg.items() if key != "init_std"}
    model = SVD(**model_cfg, init_params=init, seed=seed, verbose=False).fit(train_set)
    preds = np.array(
        [
            float(model.rate(train_set.uid_map.get(u, -1), train_set.iid_map.get(i, -1)))
            for u, i in zip(r.user[test], r.item[test], strict=True)
        ]
    )
    golds = r.value[test]
    err = preds - golds
    return {
        "protocol": {
            "split": split,
            "seed": seed,
            "test_ratio": test_ratio,
            "namespace": namespace,
            "duplicates_dropped": r.duplicates,
            "published": "Surprise SVD on ML-100K, 5-fold CV: RMSE 0.934, MAE 0.737",
        },
        "model": "cornac.models.SVD",
        "params": cfg,
        "n_train": len(train),
        "n_test": len(test),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "user_ids": r.user[test].tolist(),
        "item_ids": r.item[test].tolist(),
        "interaction_ids": r.iid[test].tolist(),
        "golds": golds.tolist(),
        "predictions": preds.tolist(),
        "abs_errors": np.abs(err).tolist(),
        "sq_errors": (err**2).tolist(),
        "baselines": _mean_baselines(r, train, test),
        "seconds": time.perf_counter() - start,
    }


def _mean_baselines(r: _Ratings, train: np.ndarray, test: np.ndarray) -> dict[str, dict[str, float]]:
    """The cheap predictors every table shows: global, user and item mean of the train ratings."""
    mu = float(r.value[train].mean())
    out: dict[str, dict[str, float]] = {}
    for name, key in (("global-mean", None), ("user-mean", r.user), ("item-mean", r.item)):
        if key is None:
            pred = np.full(len(test), mu)
        else:
            sums: dict[str, list[float]] = {}
            for k, v in zip(key[train], r.value[train], strict=True):
                sums.setdefault(k, []).append(v)
            means = {k: float(np.mean(v)) for k, v in sums.items()}
            pred = np.array([means.get(k, mu) for k in key[test]])
        err = pred - r.value[test]
        out[name] = {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
    return out


@dataclass(frozen=True)
class HeldOutRating:
    """One held-out rating of :func:`rating_anchor`'s split, ready to be asked of an LLM method.

    ``held_out`` lists the user's held-out interaction ids (this one included): a
    method must not see them, so :meth:`query` excludes them from the user's history.
    """

    user_id: str
    item_id: str
    rating: float
    timestamp: int
    interaction_id: str
    example_id: str | None  # the store's "movielens-rating" TaskExample for this rating
    text: str  # that example's input, e.g. "Toy Story (1995). Genres: Animation, Children's, Comedy."
    held_out: tuple[str, ...] = ()

    def query(self) -> Query:
        """The rating query. No time cut-off: the method sees exactly the anchor's training
        ratings of this user (earlier *and* later ones), minus every held-out one."""
        return Query(
            text=self.text,
            task="movielens-rating",
            timestamp=None,
            exclude_doc_ids=self.held_out,
            metadata={"item_id": self.item_id, "example_id": self.example_id},
        )


def rating_heldout(
    store: Store,
    *,
    split: Split = "random",
    seed: int = 0,
    n: int | None = None,
    sample_seed: int = 0,
    test_ratio: float = 0.2,
    namespace: str = "ml-100k",
) -> list[HeldOutRating]:
    """The held-out ratings of :func:`rating_anchor` (same ``split``, ``seed``, ``test_ratio``).

    ``n`` draws a seeded sample (``sample_seed``) for slow LLM methods; the result keeps
    the anchor's order, so its per-example errors can be matched by ``interaction_id``
    for paired comparisons.
    """
    r = _load_ratings(store, namespace)
    _, test = _rating_split(r, split, seed, test_ratio)
    held = r.hidden(test)
    if n is not None and n < len(test):
        pick = np.random.default_rng(sample_seed).choice(len(test), size=n, replace=False)
        test = test[np.sort(pick)]
    examples: dict[tuple[str, str, int], tuple[str, str]] = {}
    for uid in sorted(set(r.user[test])):
        for ex in store.get_examples(task="movielens-rating", user_id=uid):
            examples[(uid, str(ex.metadata.get("item_id")), int(ex.timestamp or 0))] = (ex.example_id, ex.input)
    out = []
    for i in test:
        uid, item, ts = r.user[i], r.item[i], int(r.ts[i])
        example_id, text = examples.get((uid, item, ts), (None, item))
        out.append(
            HeldOutRating(uid, item, float(r.value[i]), ts, r.iid[i], example_id, text, tuple(sorted(held[uid])))
        )
    return out


# -- top-k recommendation -------------------------------------------------------------------------


def ranking_metrics(relevant: Sequence[Any], ranked: Sequence[Any], k: int = 10) -> dict[str, float]:
    """RecBole's top-k metrics for one user, computed by Cornac's implementations.

    ``relevant``: the user's held-out items; ``ranked``: the recommendation list, best first
    (only its first ``k`` count). NDCG's ideal list has min(len(relevant), k) hits.

    Example (derivation in tests/eval/test_recsys.py):
        >>> {m: round(v, 4) for m, v in ranking_metrics(["a", "c"], ["b", "a", "d", "c"], k=3).items()}
        {'ndcg@3': 0.3869, 'hit@3': 1.0, 'mrr@3': 0.5, 'recall@3': 0.5, 'precision@3': 0.3333}
    """
    from cornac.metrics import MRR, NDCG, HitRatio, Precision, Recall

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(relevant) == 0:
        raise ValueError("relevant is empty: a user without held-out items has no ranking metrics")
    codes = {x: n for n, x in enumerate(dict.fromkeys([*relevant, *ranked]))}
    gt = np.array([codes[x] for x in dict.fromkeys(relevant)])
    top = np.array([codes[x] for x in list(ranked)[:k]], dtype=int)
    hit = bool(np.isin(top, gt).any())
    return {
        f"ndcg@{k}": float(NDCG(k=k).compute(gt_pos=gt, pd_rank=top)),
        f"hit@{k}": float(HitRatio(k=k).compute(gt_pos=gt, pd_rank=top)),
        # Cornac's MRR has no cut-off and refuses a list without a hit: that is RecBole's 0 at k.
        f"mrr@{k}": float(MRR().compute(gt_pos=gt, pd_rank=top)) if hit else 0.0,
        f"recall@{k}": float(Recall(k=k).compute(gt_pos=gt, pd_rank=top)),
        f"precision@{k}": float(Precision(k=k).compute(gt_pos=gt, pd_rank=top)),
    }


@dataclass
class RecSetup:
    """One RecBole-style split of the interactions and the models trained on it.

    Built by :func:`prepare_recommendation`; pass it to several :func:`recommendation`
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


def _recbole_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """RecBole's ``_calcu_split_ids``: every part but the first rounded down, none left empty if avoidable."""
    total = sum(ratios)
    ratios = [x / total for x in ratios]
    cnt = [int(x * n) for x in ratios]
    cnt[0] = n - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


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
    r = _load_ratings(store, namespace)
    users = sorted(set(r.user.tolist()))
    items = sorted(set(r.item.tolist()))
    if order == "RO":
        perm = np.random.default_rng(seed).permutation(len(r))
    elif order == "TO":
        perm = np.arange(len(r))  # _load_ratings sorts each user's ratings by time
    else:
        raise ValueError(f"order must be 'RO' or 'TO', got {order!r}")
    u_index = {u: n for n, u in enumerate(users)}
    i_index = {i: n for n, i in enumerate(items)}
    parts: list[dict[int, np.ndarray]] = [{}, {}, {}]
    held_out: dict[str, tuple[str, ...]] = {}
    for rows in _by_user(r.user, perm):
        uu = u_index[r.user[rows[0]]]
        bounds = np.cumsum(_recbole_counts(len(rows), ratios))[:-1]
        for part, chunk in zip(parts, np.split(rows, bounds), strict=True):
            part[uu] = np.array([i_index[x] for x in r.item[chunk]], dtype=np.int64)
        held_out[users[uu]] = tuple(sorted(r.hidden(rows[bounds[0] :]).get(users[uu], [])))
    train, valid, test = parts
    popularity = np.zeros(len(items))
    for its in train.values():
        popularity[its] += 1
    cfg = {**BPR_DEFAULTS, **(bpr or {})}
    setup = RecSetup(
        users=users,
        items=items,
        train=train,
        valid=valid,
        test=test,
        held_out=held_out,
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
        "n_users": len(users),
        "n_items": len(items),
        "n_train": int(sum(len(v) for v in train.values())),
        "n_valid": int(sum(len(v) for v in valid.values())),
        "n_test": int(sum(len(v) for v in test.values())),
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
        top = _top_k(setup.mask(eval_users, setup.bpr_scores(eval_users), phase="valid"), 10)
        mrr = float(np.mean([_mrr(setup.valid[u], row) for u, row in zip(eval_users, top, strict=True)]))
        if mrr > best[0]:
            best, stale = (mrr, epoch, {k: v.copy() for k, v in params.items()}), 0
        else:
            stale += 1
    setup.bpr_user, setup.bpr_item, setup.bpr_bias = best[2]["U"], best[2]["V"], best[2]["Bi"]
    return best[1], best[0]


def _mrr(relevant: np.ndarray, top: np.ndarray) -> float:
    hits = np.flatnonzero(np.isin(top, relevant))
    return 1.0 / (hits[0] + 1) if len(hits) else 0.0


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the k highest scores, best first; ties broken by the lower index."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    order = np.lexsort((part, -scores[rows, part]), axis=1)
    return part[rows, order]


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
        candidates: how many BPR top items the re-ranker reorders (its HR@k is bounded by
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
    eligible = sorted(u for u, v in setup.test.items() if len(v))
    if n_users is not None and n_users < len(eligible):
        eligible = sorted(np.random.default_rng(seed).choice(eligible, size=n_users, replace=False).tolist())
    u = np.array(eligible, dtype=np.int64)
    ids = np.array(setup.items, dtype=object)
    relevant = [ids[setup.test[uu]].tolist() for uu in u]

    pop = setup.mask(u, np.tile(setup.popularity, (len(u), 1)), phase="test")
    bpr_top = _top_k(setup.mask(u, setup.bpr_scores(u), phase="test"), candidates)
    lists: dict[str, list[list[str]]] = {
        "most-popular": [ids[row].tolist() for row in _top_k(pop, k)],
        "bpr": [ids[row[:k]].tolist() for row in bpr_top],
    }
    cand = None
    if rerank is not None:
        rng = np.random.default_rng(seed)
        lists["rerank"], lists["random-rerank"] = [], []
        for n, (uu, row) in enumerate(zip(u, bpr_top, strict=True)):
            cands = ids[row].tolist()
            uid = setup.users[uu]
            out = list(rerank(uid, list(cands), held_out=setup.held_out[uid]))
            if sorted(out) != sorted(cands):
                raise ValueError(f"rerank must return a permutation of the {len(cands)} candidates for {uid}")
            lists["rerank"].append(out)
            lists["random-rerank"].append([cands[i] for i in rng.permutation(len(cands))])
            if progress:
                progress(n + 1, len(u))
        per = [
            ranking_metrics(rel, ids[row].tolist(), k=candidates) for rel, row in zip(relevant, bpr_top, strict=True)
        ]
        cand = {
            "n": candidates,
            "metrics": {m: float(np.mean([p[m] for p in per])) for m in (f"recall@{candidates}", f"hit@{candidates}")},
            "per_user": {m: [p[m] for p in per] for m in (f"recall@{candidates}", f"hit@{candidates}")},
        }
    models = {}
    for name, rows in lists.items():
        per = [ranking_metrics(rel, row, k=k) for rel, row in zip(relevant, rows, strict=True)]
        models[name] = {
            "metrics": {m: float(np.mean([p[m] for p in per])) for m in per[0]},
            "per_user": {m: [p[m] for p in per] for m in per[0]},
            "top": [row[:k] for row in rows],
        }
    return {
        "protocol": setup.info.get("protocol", RECBOLE_PROTOCOL),
        "k": k,
        "seed": setup.info.get("seed", seed),
        "users": [setup.users[uu] for uu in u],
        "models": models,
        "candidates": cand,
        "setup": {key: v for key, v in setup.info.items() if key != "protocol"},
        "seconds": time.perf_counter() - start,
    }


# -- LLM re-ranking ---------------------------------------------------------------------------------


def _describe(item: Any, fallback: str) -> str:
    """A movie as the MovieLens loader writes example inputs: 'Title (year). Genres: a, b.'"""
    if item is None or not item.title:
        return fallback
    text = item.title + (f" ({item.attributes['year']})" if item.attributes.get("year") else "") + "."
    genres = item.attributes.get("genres")
    return text + (f" Genres: {', '.join(map(str, genres))}." if genres else "")


def _shared_prefix_logprobs(
    model: Any, tokenizer: Any, convs: Sequence[Sequence[Mapping[str, str]]], choices: Sequence[str], batch_size: int
) -> np.ndarray | None:
    """What ``score_choices`` returns, computing the conversations' common prefix once.

    A user's candidate questions share one long personalized system message and
    differ in a short tail, so running the prefix once and only the tails against
    its key/value cache cuts the work by the context-to-tail ratio (about 10x here).
    Tails are right-padded: a real token never attends to the pads after it, so
    no mask is needed and positions stay those of the unbatched prompt. Returns
    None (caller falls back to ``score_choices``) unless every choice is one token.
    """
    import copy

    import torch

    choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    if any(len(ids) != 1 for ids in choice_ids):
        return None
    ids = [
        list(tokenizer.apply_chat_template(list(c), add_generation_prompt=True, return_dict=True)["input_ids"])
        for c in convs
    ]
    first = ids[0]
    n = min(len(x) for x in ids) - 1  # every row keeps at least its last token to predict from
    for x in ids[1:]:
        n = min(n, next((j for j, (a, b) in enumerate(zip(first, x, strict=False)) if a != b), n))
    if n < 1:
        return None
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    columns = [c[0] for c in choice_ids]
    out = np.zeros((len(ids), len(choices)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            cache = model(input_ids=torch.tensor([first[:n]], device=device), use_cache=True).past_key_values
            for i in range(0, len(ids), batch_size):
                tails = [x[n:] for x in ids[i : i + batch_size]]
                width = max(len(t) for t in tails)
                batch_cache = copy.deepcopy(cache)
                batch_cache.batch_repeat_interleave(len(tails))
                inputs = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=device)
                logits = model(input_ids=inputs, past_key_values=batch_cache, use_cache=True).logits.float()
                last = logits[torch.arange(len(tails)), torch.tensor([len(t) - 1 for t in tails])]
                out[i : i + len(tails)] = torch.log_softmax(last, dim=-1)[:, columns].cpu().numpy()
    finally:
        model.train(was_training)
    return out


class LLMReranker:
    """Pointwise LLM re-ranking: log P("Yes") - log P("No") for "Would this user enjoy <movie>?".

    A 135M model cannot reliably write a ranked list, so each candidate is scored by
    constrained choice under one personalized context: the contributions of the
    method ``method_spec`` (e.g. "profile", "rag-bm25", "identity") plus, if
    ``liked > 0``, the user's highest-rated training movies. Contextual calibration
    is not applied: its content-free correction is the same for every candidate of a
    user, so it cannot change their order. Ties keep the CF order.

    With a local transformers generator (one exposing ``model`` and ``tokenizer``, no
    adapters loaded) the shared context is computed once per user
    (``share_prefix``); any other generator is scored through its ``score_choices``.
    ``records_`` keeps, per user, the scores, the scoring path and what the prompt held.
    """

    def __init__(
        self,
        store: Store,
        generator: Any,
        *,
        method_spec: str = "profile",
        liked: int = 10,
        liked_min: float = 4.0,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        embedder: Any = None,
        budget_tokens: int = 1024,
        batch_size: int = 10,
        share_prefix: bool = True,
    ) -> None:
        from tailorlm.personalize import parse_method_spec

        if not callable(getattr(generator, "score_choices", None)):
            raise TypeError(f"{type(generator).__name__} cannot score choices (no score_choices method)")
        if liked < 0 or batch_size < 1:
            raise ValueError(f"liked must be >= 0 and batch_size >= 1, got {liked}, {batch_size}")
        self.store = store
        self.generator = generator
        self.method_spec = method_spec
        self.liked = liked
        self.liked_min = liked_min
        self.budget_tokens = budget_tokens
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self.name = f"llm[{method_spec}{f'+liked{liked}' if liked else ''}]"
        self.personalizer = parse_method_spec(
            method_spec,
            collaborators={"generator": generator, "embedder": embedder},
            overrides=overrides,
            budget_tokens=budget_tokens,
        ).fit(store)
        self.records_: dict[str, dict[str, Any]] = {}

    def _liked_block(self, user_id: str, query: Query) -> Contribution:
        entries = [e for e in eligible_history(self.store, user_id, query) if (e.rating or 0) >= self.liked_min]
        entries.sort(key=lambda e: (-(e.rating or 0), -(e.timestamp or 0)))
        items = tuple(
            ContextItem(text=e.title or e.text, source_id=e.entry_id, label=f"{e.rating:g}")
            for e in entries[: self.liked]
        )
        heading = "Movies this user rated highly (their rating after ->):"
        blocks = [ContextBlock("history", heading, items, priority=1)] if items else []
        return Contribution(method="liked", blocks=blocks, scope="user" if items else "none")

    def messages(
        self, user_id: str, candidates: Sequence[str], *, held_out: Sequence[str] = ()
    ) -> list[list[dict[str, str]]]:
        """One conversation per candidate: the personalized system message, then the yes/no question."""
        from tailorlm.personalize import Pipeline, render
        from tailorlm.personalize.render import approx_tokens

        catalogue = self.store.get_items(list(candidates))
        texts = [_describe(catalogue.get(c), c) for c in candidates]
        query = Query(
            text="\n".join(texts),  # what retrieval matches the user's history against
            task="recommendation",
            timestamp=None,
            exclude_doc_ids=tuple(held_out),
            choices=tuple(texts),
        )
        steps = self.personalizer.steps if isinstance(self.personalizer, Pipeline) else [self.personalizer]
        contributions = [s.contribute(user_id, query) for s in steps]
        if self.liked:
            contributions.append(self._liked_block(user_id, query))
        rendered = render(contributions, query, budget_tokens=self.budget_tokens)
        system = rendered.messages[0]["content"]
        convs = [
            [
                {"role": "system", "content": system},
                {"role": "user", "content": f"Would this user enjoy the movie {t} Answer Yes or No."},
            ]
            for t in texts
        ]
        self.records_[user_id] = {
            "candidates": list(candidates),
            "scope": rendered.record.scope,
            "retrieved": [r["id"] for r in rendered.record.retrieved],
            "context_tokens": approx_tokens(system),
        }
        return convs

    def _logprobs(self, convs: list[list[dict[str, str]]]) -> tuple[np.ndarray, str]:
        """(len(convs), 2) log-probabilities of "Yes" and "No", and which path computed them."""
        gen = self.generator
        model, tokenizer = getattr(gen, "model", None), getattr(gen, "tokenizer", None)
        if self.share_prefix and model is not None and tokenizer is not None and not getattr(gen, "adapters", None):
            logp = _shared_prefix_logprobs(model, tokenizer, convs, ["Yes", "No"], self.batch_size)
            if logp is not None:
                return logp, "shared-prefix"
        batches = [
            np.asarray(gen.score_choices(convs[i : i + self.batch_size], ["Yes", "No"]), dtype=float)
            for i in range(0, len(convs), self.batch_size)
        ]
        return np.concatenate(batches), "score_choices"

    def __call__(self, user_id: str, candidates: Sequence[str], *, held_out: Sequence[str] = ()) -> list[str]:
        logp, path = self._logprobs(self.messages(user_id, candidates, held_out=held_out))
        scores = (logp[:, 0] - logp[:, 1]).tolist()
        self.records_[user_id].update(scores=scores, scoring=path)
        order = sorted(range(len(candidates)), key=lambda j: (-scores[j], j))
        return [candidates[j] for j in order]


def llm_reranker(store: Store, generator: Any, method_spec: str = "profile", **kwargs: Any) -> LLMReranker:
    """The default LLM re-ranker for :func:`recommendation`; see :class:`LLMReranker` for ``kwargs``.

    Example:
        >>> rr = llm_reranker(store, TransformersGenerator(), method_spec="profile")  # doctest: +SKIP
        >>> recommendation(store, n_users=50, rerank=rr)["models"]["rerank"]["metrics"]  # doctest: +SKIP
    """
    return LLMReranker(store, generator, method_spec=method_spec, **kwargs)
