"""MovieLens-100K rows of the harness: rating prediction and top-k recommendation, each with a classic anchor.

A personalization number means little without the classic method for the same task
beside it, measured on the same held-out data. This package provides those anchors
from a maintained library (Cornac) and the hooks that put tailorlm methods on the
same examples:

- :func:`rating_anchor`: biased matrix factorization ("SVD", Koren 2008) on a seeded
  random 80/20 split of all ratings, RMSE / MAE with per-example errors.
  :func:`rating_heldout` returns the same held-out ratings as queries for LLM methods.
- :func:`recommendation`: RecBole's default general-recommendation protocol (see
  :data:`RECBOLE_PROTOCOL`) with BPR and most-popular baselines, and the BPR top
  candidates re-ranked by any callable (:func:`llm_reranker` is the default LLM one),
  with per-user values.

Modules: ``data`` (ratings from the store), ``splits`` (rating and RecBole splits),
``rating`` (SVD anchor, held-out queries), ``bpr`` (split + BPR / most-popular
training), ``recommend`` (top-k evaluation and re-ranking), ``rerank`` (the LLM
re-ranker). The ranking metrics live in :mod:`tailorlm.eval.metrics`
(:func:`ranking_metrics` is re-exported here).

Why Cornac: it is maintained (3.0.1), ships cp311 wheels that work with numpy 2, has
biased MF, BPR, most-popular and the ranking metrics, and does not pull torch.
scikit-surprise builds from source and ``implicit`` has no rating model. Importing
Cornac takes a few seconds, so it is imported inside functions.

Deliberately not here: bootstrap intervals, paired tests and tables (the harness
computes them from the per-example / per-user lists returned here), and
hyper-parameter search beyond early stopping on the validation split.
"""

from tailorlm.eval.metrics import ranking_metrics
from tailorlm.eval.recsys.bpr import BPR_DEFAULTS, RecSetup, prepare_recommendation
from tailorlm.eval.recsys.rating import SVD_DEFAULTS, HeldOutRating, rating_anchor, rating_heldout
from tailorlm.eval.recsys.recommend import Reranker, recommendation
from tailorlm.eval.recsys.rerank import LLMReranker, llm_reranker
from tailorlm.eval.recsys.splits import RECBOLE_PROTOCOL
from tailorlm.eval.recsys.tallrec import TallRecConfig, tallrec_rows, train_tallrec

__all__ = [
    "BPR_DEFAULTS",
    "RECBOLE_PROTOCOL",
    "SVD_DEFAULTS",
    "HeldOutRating",
    "LLMReranker",
    "RecSetup",
    "Reranker",
    "TallRecConfig",
    "llm_reranker",
    "prepare_recommendation",
    "ranking_metrics",
    "rating_anchor",
    "rating_heldout",
    "recommendation",
    "tallrec_rows",
    "train_tallrec",
]
