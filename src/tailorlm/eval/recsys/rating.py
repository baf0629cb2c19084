"""MovieLens rating prediction: Cornac's biased MF ("SVD", Koren 2008) as the classic anchor.

- :func:`rating_anchor`: SVD trained on the train ratings of a :func:`rating_split`,
  RMSE / MAE on the held-out ones with per-example errors, and the mean predictors.
- :func:`rating_heldout`: the same held-out ratings as :class:`HeldOutRating` queries,
  so LLM methods are scored on exactly the anchor's examples.

Cornac is imported inside functions (a few seconds). Not here: bootstrap intervals,
paired tests and tables (the harness computes them from the per-example lists), and
hyper-parameter search.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tailorlm.eval.recsys.data import Ratings, load_ratings
from tailorlm.eval.recsys.splits import Split, rating_split
from tailorlm.personalize import Query

if TYPE_CHECKING:
    from tailorlm.data import Store

__all__ = ["SVD_DEFAULTS", "HeldOutRating", "rating_anchor", "rating_heldout"]

#: Surprise's ``SVD`` defaults, which give the often-quoted RMSE ~0.934 on ML-100K (5-fold CV). ``init_std``
#: is Surprise's factor initialization (Cornac's own, 0.01, leaves 20 epochs close to a biases-only model).
SVD_DEFAULTS: dict[str, Any] = {"k": 100, "max_iter": 20, "learning_rate": 0.005, "lambda_reg": 0.02, "init_std": 0.1}


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
    start = time.perf_counter()
    r = load_ratings(store, namespace)
    train, test = rating_split(r, split, seed, test_ratio)
    cfg = {**SVD_DEFAULTS, **(params or {})}
    preds = _fit_svd(r, train, test, cfg, seed)
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


def _fit_svd(r: Ratings, train: np.ndarray, test: np.ndarray, cfg: Mapping[str, Any], seed: int) -> np.ndarray:
    """Cornac SVD with Surprise's initialization fitted on ``train``; its predictions for ``test``."""
    from cornac.data import Dataset
    from cornac.models import SVD

    data = list(zip(r.user[train], r.item[train], r.value[train], strict=True))
    train_set = Dataset.from_uir(data, seed=seed)
    rng = np.random.default_rng(seed)
    init = {  # biases start at zero, as in Surprise
        "U": rng.normal(0.0, cfg["init_std"], (train_set.num_users, cfg["k"])).astype(np.float32),
        "V": rng.normal(0.0, cfg["init_std"], (train_set.num_items, cfg["k"])).astype(np.float32),
    }
    model_cfg = {key: v for key, v in cfg.items() if key != "init_std"}
    model = SVD(**model_cfg, init_params=init, seed=seed, verbose=False).fit(train_set)
    return np.array(
        [
            float(model.rate(train_set.uid_map.get(u, -1), train_set.iid_map.get(i, -1)))
            for u, i in zip(r.user[test], r.item[test], strict=True)
        ]
    )


def _mean_baselines(r: Ratings, train: np.ndarray, test: np.ndarray) -> dict[str, dict[str, float]]:
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
    r = load_ratings(store, namespace)
    _, test = rating_split(r, split, seed, test_ratio)
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
