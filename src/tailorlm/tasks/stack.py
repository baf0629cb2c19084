"""A learned user head: how much to trust the user's history, learned from the population.

The hand-built heads (:mod:`tailorlm.tasks.heads`) each apply one rule (add the user's
mean residual, shift by the user's label prior) with one shrinkage strength. Which rule
helps, and how much, differs by dataset: on some the text decides and users barely
depart from it, on others the user's habits decide. :class:`UserStackHead` learns that
from the population instead: a logistic regression over

- the global text model's label distribution for the input (its log-probabilities),
- the crowd's score for the same item (the other users' labels, shrunk toward the text
  model) and how many raters it rests on,
- summaries of the user's earlier labelled history measured against the same global
  scores: the user's mean residual from the text model and from the crowd, shrunk with
  two strengths, the user's label distribution against the population's, its spread, and
  how long the history is,

trained on population users' own queries with their own strictly earlier histories (the
same leakage guards as at test time). The global scores a training row sees must be what
a test user sees, i.e. from a model that never trained on this user: the text model is
cross-fitted (folds by user, each fold scored by a model fitted without it), and the crowd
never counts the user's own labels. The regression decides ratings by the median of its
distribution (the MAE-optimal point) and labels by the likeliest allowed one.

Its grid holds ``use="global"`` (the text model alone, no personalization) beside
``use="stack"``, so validation users can say that the learned head does not help.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from tailorlm.tasks.base import Task
from tailorlm.tasks.heads import GlobalScorer, Observation, _Head, _num
from tailorlm.tasks.predict import Prediction, decide_distribution

__all__ = ["UserStackHead"]

_EPS = 1e-3


class UserStackHead(_Head):
    """A logistic regression over global scores and the user's history measured against them.

    Args:
        folds: cross-fitting folds (by user) for the text model's scores of training rows.
        C: inverse regularization strength of the regression (features are standardized).
        shrink: the two shrinkage strengths of the user's mean residuals (few and many labels).
        encoder: texts -> vectors for the global text model (e.g. the frozen LLM,
            :class:`~tailorlm.tasks.text_model.LLMTextEncoder`); None: TF-IDF.
    """

    name = "user-stack"
    personalized = True
    kinds = ("rating", "classification")
    learns_from_histories = True  # fit_head passes population histories to fit

    def __init__(
        self, *, folds: int = 5, C: float = 0.3, shrink: tuple[float, float] = (1.0, 5.0), encoder: Any = None
    ) -> None:
        self.folds = folds
        self.C = C
        self.shrink = shrink
        self.encoder = encoder

    def grid(self, task: Task) -> dict[str, tuple[Any, ...]]:
        return {"use": ("global", "stack")}

    # -- fitting ----------------------------------------------------------------------------------

    def fit(  # type: ignore[override]
        self,
        task: Task,
        population: Sequence[Observation],
        histories: Sequence[Sequence[Observation] | None] | None = None,
    ) -> UserStackHead:
        """``histories[i]``: the strictly earlier labelled history of ``population[i]``'s user,
        or None where ``population[i]`` is not a training query."""
        super().fit(task, population)
        self.classes_ = self._classes(task, population)
        self.prior_ = np.asarray([self.scorer_.prior_.get(c, 0.0) for c in self.classes_])
        self.stack_: Any = None
        rows = [i for i, h in enumerate(histories or ()) if h is not None and population[i].value is not None]
        if len(rows) < 20 or len({population[i].value for i in rows}) < 2:
            return self  # too little to learn from: the head answers with the global model
        assert histories is not None
        features = np.empty((len(rows), self._width(task)))
        for fold_rows in self._fold_rows(population, rows).values():
            held = {population[i].user_id for _, i in fold_rows}
            rest = [o for o in population if o.user_id not in held]
            if not rest or len({o.value for o in rest if o.value is not None}) < 2:
                text = self.scorer_  # a single user: nothing to cross-fit on; in-sample beats nothing
            else:
                text = GlobalScorer(encoder=self.encoder).fit(task, rest)
            for pos, i in fold_rows:
                features[pos] = self._features(task, text, population[i], histories[i] or ())
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        labels = [population[i].value for i in rows]
        self.stack_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.stack_.fit(features, labels)
        self.training_rows_ = len(rows)
        return self

    def _fold_rows(self, population: Sequence[Observation], rows: list[int]) -> dict[int, list[tuple[int, int]]]:
        """fold -> [(position in the training matrix, population index)], folds by user."""
        out: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for pos, i in enumerate(rows):
            fold = zlib.crc32((population[i].user_id or "").encode("utf-8")) % self.folds
            out[fold].append((pos, i))
        return out

    @staticmethod
    def _classes(task: Task, population: Sequence[Observation]) -> list[str]:
        seen = {o.value for o in population if o.value is not None}
        if task.kind == "rating":
            return sorted(seen | set(task.labels), key=float)
        return sorted(seen)

    # -- features ---------------------------------------------------------------------------------

    def _width(self, task: Task) -> int:
        k = len(self.classes_)
        return 2 * k + 1 if task.kind == "classification" else 2 * k + 11

    def _distribution(self, task: Task, scorer: GlobalScorer, texts: Sequence[str]) -> np.ndarray:
        """The text model's distribution over ``self.classes_`` (0 for a class it never saw)."""
        classes, probs = scorer.distributions(task, texts)
        out = np.zeros((len(texts), len(self.classes_)))
        index = {c: j for j, c in enumerate(self.classes_)}
        for j, c in enumerate(classes):
            if c in index:
                out[:, index[c]] = probs[:, j]
        return out

    def _user_prior(self, history: Sequence[Observation]) -> np.ndarray:
        """log(user's label share / population's), the share shrunk toward the population's."""
        counts = Counter(h.value for h in history if h.value is not None)
        n = sum(counts.values())
        alpha = self.shrink[1]
        own = np.asarray(
            [(counts.get(c, 0) + alpha * p) / (n + alpha) for c, p in zip(self.classes_, self.prior_, strict=True)]
        )
        return np.log((own + _EPS) / (self.prior_ + _EPS))

    def _features(
        self, task: Task, text: GlobalScorer, query: Observation, history: Sequence[Observation]
    ) -> np.ndarray:
        p = self._distribution(task, text, [query.text])[0]
        labelled = [h for h in history if h.value is not None]
        n = len(labelled)
        if task.kind == "classification":
            return np.concatenate([np.log(p + _EPS), self._user_prior(labelled), [np.log1p(n)]])
        values = np.asarray([float(c) for c in self.classes_])
        expected = float(p @ values)
        total, n_crowd = self.scorer_.crowd(query.item_id, query.user_id)
        crowd = expected if n_crowd == 0 else (total + 3.0 * expected) / (n_crowd + 3.0)
        own = [(h, v) for h in labelled if (v := _num(h.value)) is not None]
        few, many = self.shrink
        if own:
            v = np.asarray([x for _, x in own])
            hist_obs = [h for h, _ in own]
            crowd_parts = [self.scorer_.crowd(h.item_id, h.user_id) for h in hist_obs]
            text_parts = text.expectations(task, [h.text for h in hist_obs])
            res_text = v - text_parts
            hist_crowd = np.asarray(
                [g if c == 0 else (t + 3.0 * g) / (c + 3.0) for (t, c), g in zip(crowd_parts, text_parts, strict=True)]
            )
            res_crowd = v - hist_crowd
            user = [
                res_text.sum() / (len(v) + few),
                res_text.sum() / (len(v) + many),
                res_crowd.sum() / (len(v) + few),
                res_crowd.sum() / (len(v) + many),
                float(v.std()),
            ]
        else:
            user = [0.0, 0.0, 0.0, 0.0, 0.0]
        crowd_part = [expected, crowd, crowd - expected, np.log1p(n_crowd), float(n_crowd == 0)]
        return np.concatenate([np.log(p + _EPS), self._user_prior(labelled), crowd_part, user, [np.log1p(n)]])

    # -- predicting -------------------------------------------------------------------------------

    def predict(  # type: ignore[override]
        self, task, queries, histories, choices, *, use: str = "stack"
    ) -> list[Prediction]:
        if use == "global" or self.stack_ is None:
            probs = self._distribution(task, self.scorer_, [q.text for q in queries])
            return [
                decide_distribution(task, self.classes_, row, tuple(ch)) for row, ch in zip(probs, choices, strict=True)
            ]
        features = np.stack([self._features(task, self.scorer_, q, h) for q, h in zip(queries, histories, strict=True)])
        probs = self.stack_.predict_proba(features)
        classes = [str(c) for c in self.stack_.classes_]
        return [decide_distribution(task, classes, row, tuple(ch)) for row, ch in zip(probs, choices, strict=True)]
