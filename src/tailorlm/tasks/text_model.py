"""The strongest cheap non-personalized baseline: a text classifier trained on the population.

A personalized method is only worth its cost if it beats a good *global* model that reads
the input. For rating and classification tasks that is, first of all, TF-IDF features of
the input's content with a logistic regression (scikit-learn), trained on the population's
examples only (never an evaluated user's). Ratings are decided by the median of the
predicted distribution (the MAE-optimal point), and the expectation is kept for RMSE
readers in ``extra``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from tailorlm.tasks.base import Task
from tailorlm.tasks.predict import Prediction, decide_distribution

__all__ = ["GlobalTextPredictor", "LLMTextEncoder"]


class LLMTextEncoder:
    """The frozen LLM as a text encoder (the generator's ``encode``: mean-pooled last hidden
    states), remembering every text it encoded: cross-fitted heads and the rows of a suite
    ask for the same population texts many times, and the encoder never changes."""

    def __init__(self, generator: Any, *, max_tokens: int = 128, batch_size: int = 16) -> None:
        if not callable(getattr(generator, "encode", None)):
            raise ValueError(f"the generator {type(generator).__name__} cannot encode texts (no 'encode' method)")
        self.generator = generator
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self._vectors})
        if todo:
            vecs = self.generator.encode(todo, max_tokens=self.max_tokens, batch_size=self.batch_size)
            self._vectors.update(zip(todo, np.asarray(vecs, dtype=np.float32), strict=True))
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)


class GlobalTextPredictor:
    """TF-IDF (word 1-2 grams), or an encoder's vectors, + logistic regression over the task
    input's content.

    Args:
        C: inverse regularization strength of the logistic regression.
        max_features: vocabulary cap of the vectorizer.
        encoder: texts -> dense vectors (e.g. :class:`LLMTextEncoder`) instead of TF-IDF;
            its vectors are standardized before the regression.
    """

    name = "global-text"

    def __init__(self, *, C: float = 1.0, max_features: int = 50_000, encoder: Any = None) -> None:
        self.C = C
        self.max_features = max_features
        self.encoder = encoder

    def _features(self, task: Task, texts: Sequence[str]) -> Any:
        contents = [task.content_of(t) for t in texts]
        return self.vectorizer_.transform(contents if self.encoder is None else self.encoder(contents))

    def fit(self, task: Task, texts: Sequence[str], labels: Sequence[str]) -> GlobalTextPredictor:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if not labels:
            raise ValueError("GlobalTextPredictor.fit needs labelled population examples")
        contents = [task.content_of(t) for t in texts]
        # Repeated (input, label) pairs are one weighted row: the same objective (the loss is a
        # sum over examples), far fewer rows where inputs repeat (a movie rated by hundreds).
        pairs = Counter(zip(contents, labels, strict=True))
        unique = [c for c, _ in pairs]
        weights = np.asarray(list(pairs.values()), dtype=float)
        if self.encoder is None:
            self.vectorizer_: Any = TfidfVectorizer(
                ngram_range=(1, 2), min_df=1, max_features=self.max_features, sublinear_tf=True
            )
            features = self.vectorizer_.fit(contents).transform(unique)  # document frequencies over all
        else:
            from sklearn.preprocessing import StandardScaler

            vectors = self.encoder(unique)
            self.vectorizer_ = StandardScaler().fit(vectors, sample_weight=weights)
            features = self.vectorizer_.transform(vectors)
        classes = sorted(set(labels))
        self.constant_ = classes[0] if len(classes) == 1 else None
        if self.constant_ is None:
            self.model_ = LogisticRegression(C=self.C, max_iter=2000)
            self.model_.fit(features, [label for _, label in pairs], sample_weight=weights)
        return self

    def distributions(self, task: Task, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The classes and, per text, the predicted probability of each: what user-level
        heads (:mod:`tailorlm.tasks.heads`) shift or average."""
        if self.constant_ is not None:
            return [self.constant_], np.ones((len(texts), 1))
        probs = self.model_.predict_proba(self._features(task, texts))
        return [str(c) for c in self.model_.classes_], probs

    def predict(self, task: Task, texts: Sequence[str], choices: Sequence[Sequence[str]]) -> list[Prediction]:
        if self.constant_ is not None:
            return [Prediction(self.constant_, extra={"constant": True}) for _ in texts]
        classes, probs = self.distributions(task, texts)
        return [decide_distribution(task, classes, row, tuple(ch)) for row, ch in zip(probs, choices, strict=True)]
