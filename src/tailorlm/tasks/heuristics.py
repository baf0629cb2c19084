"""The input heuristics a reviewer tries first on text-to-text tasks, as predictors.

A rewriting model that does not beat copying its input, or a title model that does not
beat the input's first words, has learned nothing worth personalizing; the suites show
these beside the model rows so such a result is visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tailorlm.tasks.base import Task
from tailorlm.tasks.predict import Prediction

__all__ = ["CopyInputPredictor", "FirstWordsPredictor"]


class CopyInputPredictor:
    """Answer the input's content (the variable part, without the task's instruction)."""

    name = "copy-input"

    def predict(self, task: Task, texts: Sequence[str]) -> list[Prediction]:
        return [Prediction(task.content_of(t).strip()) for t in texts]


class FirstWordsPredictor:
    """The input content's first ``n`` words, ``n`` the median length of the population's
    answers (learned from the population, so a headline task and a tweet task differ)."""

    name = "first-words"

    def fit(self, targets: Sequence[str]) -> FirstWordsPredictor:
        lengths = [len(t.split()) for t in targets if t and t.strip()]
        if not lengths:
            raise ValueError("FirstWordsPredictor.fit needs non-empty population answers")
        self.n_words_ = max(1, int(np.median(lengths)))
        return self

    def predict(self, task: Task, texts: Sequence[str]) -> list[Prediction]:
        return [
            Prediction(" ".join(task.content_of(t).split()[: self.n_words_]), extra={"n_words": self.n_words_})
            for t in texts
        ]
