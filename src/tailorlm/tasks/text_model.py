"""The strongest cheap non-personalized baseline: a text classifier trained on the population.

A personalized method is only worth its cost if it beats a good *global* model that reads
the input. For rating and classification tasks that is, first of all, TF-IDF features of
the input's content with a logistic regression (scikit-learn), trained on the population's
examples only (never an evaluated user's). Ratings are decided by the median of the
predicted distribution (the MAE-optimal point), and the expectation is kept for RMSE
readers in ``extra``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tailorlm.tasks.base import Task
from tailorlm.tasks.predict import Prediction

__all__ = ["GlobalTextPredictor"]


class GlobalTextPredictor:
    """TF-IDF (word 1-2 grams) + logistic regression over the task input's content.

    Args:
        C: inverse regularization strength of the logistic regression.
        max_features: vocabulary cap of the vectorizer.
    """

    name = "global-text"

    def __init__(self, *, C: float = 1.0, max_features: int = 50_000) -> None:
        self.C = C
        self.max_features = max_features

    def fit(self, task: Task, texts: Sequence[str], labels: Sequence[str]) -> GlobalTextPredictor:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if not labels:
            raise ValueError("GlobalTextPredictor.fit needs labelled population examples")
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=(1, 2), min_df=1, max_features=self.max_features, sublinear_tf=True
        )
        features = self.vectorizer_.fit_transform([task.content_of(t) for t in texts])
        classes = sorted(set(labels))
        self.constant_ = classes[0] if len(classes) == 1 else None
        if self.constant_ is None:
            self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(features, list(labels))
        return self

    def distributions(self, task: Task, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The classes and, per text, the predicted probability of each: what user-level
        heads (:mod:`tailorlm.tasks.heads`) shift or average."""
        if self.constant_ is not None:
            return [self.constant_], np.ones((len(texts), 1))
        probs = self.model_.predict_proba(self.vectorizer_.transform([task.content_of(t) for t in texts]))
        return [str(c) for c in self.model_.classes_], probs

    def predict(self, task: Task, texts: Sequence[str], choices: Sequence[Sequence[str]]) -> list[Prediction]:
        if self.constant_ is not None:
            return [Prediction(self.constant_, extra={"constant": True}) for _ in texts]
        classes, probs = self.distributions(task, texts)
        return [self._decide(task, row, classes, tuple(ch)) for row, ch in zip(probs, choices, strict=True)]

    @staticmethod
    def _decide(task: Task, probs: np.ndarray, classes: list[str], choices: tuple[str, ...]) -> Prediction:
        if task.kind == "rating":
            values = np.asarray([float(c) for c in classes])
            order = np.argsort(values)
            cdf = np.cumsum(probs[order])
            median = values[order][int(np.searchsorted(cdf, 0.5))]
            extra: dict[str, Any] = {"expected": float(np.dot(probs, values))}
            return Prediction(f"{median:g}", extra=extra)
        allowed = [i for i, c in enumerate(classes) if not choices or c in choices]
        if not allowed:  # none of this question's labels was seen in training
            return Prediction(choices[0] if choices else None, extra={"unseen_labels": True})
        best = max(allowed, key=lambda i: probs[i])
        return Prediction(classes[best], extra={"p": round(float(probs[best]), 4)})
