"""Predictors: from a personalized model input to a task answer.

For downstream tasks a 135M model answering freely is a poor predictor (it
mostly says "1", and many answers do not parse), so several predictors are
offered and compared side by side:

- :class:`GeneratePredictor`: free generation, then robust parsing (the naive baseline).
- :class:`ChoicePredictor`: constrained choice over the allowed labels by
  log-probability, optionally with contextual calibration (Zhao et al. 2021):
  divide by the label probabilities the model gives a content-free input ("N/A")
  under the *same* personalized context, then renormalize. Never unparsable.
- :class:`RetrievalVotePredictor`: no model at all; the similarity-weighted mean of
  the labels of the retrieved history (the user's own ratings of similar items).
- :class:`MajorityPredictor`, :class:`UserMeanPredictor`: the cheap baselines every
  table shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailorlm.models.base import ChoiceScorer, GenerationConfig, Generator
from tailorlm.models.inputs import generate_inputs, score_inputs
from tailorlm.tasks.base import Task

__all__ = [
    "ChoicePredictor",
    "ChoiceScorer",
    "GeneratePredictor",
    "MajorityPredictor",
    "Prediction",
    "RetrievalVotePredictor",
    "UserMeanPredictor",
]


@dataclass
class Prediction:
    answer: str | list[str] | None  # canonical answer, None if unparsable
    raw: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _labels(task: Task, choices: Sequence[str]) -> tuple[str, ...]:
    labels = tuple(choices) or task.labels
    if not labels:
        raise ValueError(f"task {task.name!r} has no labels to choose from")
    return labels


class GeneratePredictor:
    """Generate freely and parse; unparsable answers are returned as None and counted upstream."""

    name = "generate"

    def __init__(self, generator: Generator, *, batch_size: int = 8) -> None:
        self.generator = generator
        self.batch_size = batch_size

    def predict(self, task: Task, inputs: Sequence[Any], choices: Sequence[Sequence[str]]) -> list[Prediction]:
        config = GenerationConfig(max_new_tokens=task.max_new_tokens)
        out: list[Prediction] = []
        for i in range(0, len(inputs), self.batch_size):
            chunk = inputs[i : i + self.batch_size]
            texts = generate_inputs(self.generator, chunk, config=config)
            for text, ch in zip(texts, choices[i : i + self.batch_size], strict=True):
                out.append(Prediction(task.parse(text, tuple(ch)), raw=text))
        return out


def content_free(messages: list[dict[str, str]], task: Task, choices: Sequence[str]) -> list[dict[str, str]]:
    """The same conversation with the task input replaced by 'N/A' (context kept)."""
    return [*messages[:-1], {"role": "user", "content": task.request("N/A", tuple(choices))}]


class ChoicePredictor:
    """Pick the label with the highest (calibrated) log-probability.

    Args:
        scorer: a generator that implements ``score_choices``.
        calibrate: apply contextual calibration against the content-free input.
        expected: for rating tasks, answer the probability-weighted mean label
            rounded (better MAE on skewed labels) instead of the argmax.
    """

    def __init__(
        self, scorer: ChoiceScorer, *, calibrate: bool = True, expected: bool = False, batch_size: int = 8
    ) -> None:
        if not isinstance(scorer, ChoiceScorer):
            raise TypeError(f"{type(scorer).__name__} cannot score choices (no score_choices method)")
        self.scorer = scorer
        self.calibrate = calibrate
        self.expected = expected
        self.batch_size = batch_size
        self.name = "choice" + ("-calibrated" if calibrate else "") + ("-expected" if expected else "")

    def predict(self, task: Task, inputs: Sequence[Any], choices: Sequence[Sequence[str]]) -> list[Prediction]:
        out: list[Prediction] = []
        for p, ch in zip(inputs, choices, strict=True):
            labels = _labels(task, ch)
            # the content-free row keeps the same personalization (context, adapter, soft prompt)
            extra = [content_free(p.messages, task, ch)] if self.calibrate else []
            logp = np.asarray(score_inputs(self.scorer, [p], labels, extra=extra), dtype=float)
            probs = _softmax(logp[0])
            if self.calibrate:
                probs = probs / np.maximum(_softmax(logp[1]), 1e-12)
                probs = probs / probs.sum()
            if self.expected and task.kind == "rating":
                value = float(np.dot(probs, [float(x) for x in labels]))
                answer = str(int(np.clip(round(value), int(labels[0]), int(labels[-1]))))
            else:
                answer = labels[int(np.argmax(probs))]
            out.append(Prediction(answer, raw=answer, extra={"probs": probs.round(4).tolist()}))
        return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _numeric(label: str | None) -> float | None:
    try:
        return float(label) if label is not None else None
    except ValueError:
        return None


class RetrievalVotePredictor:
    """Similarity-weighted mean of the retrieved entries' labels; no language model involved.

    Falls back to ``fallback`` (the population mean, set by ``fit``) when nothing
    with a numeric label was retrieved. For classification, a weighted vote.
    """

    name = "retrieval-vote"

    def __init__(self) -> None:
        self.fallback_: str | None = None

    def fit(self, labels: Sequence[str]) -> RetrievalVotePredictor:
        nums = [v for v in map(_numeric, labels) if v is not None]
        self.fallback_ = (
            str(round(float(np.mean(nums)))) if nums else (Counter(labels).most_common(1) or [(None,)])[0][0]
        )
        return self

    def predict(self, task: Task, inputs: Sequence[Any], choices: Sequence[Sequence[str]]) -> list[Prediction]:
        out = []
        for p in inputs:
            items = [it for b in p.blocks if b.kind in ("history", "persona-examples") for it in b.items if it.label]
            if task.kind == "rating":
                pairs = [(v, max(it.score or 0.0, 0.0) + 1e-3) for it in items if (v := _numeric(it.label)) is not None]
                if pairs:
                    vals, ws = zip(*pairs, strict=True)
                    lo, hi = int(task.labels[0]), int(task.labels[-1])
                    mean = float(np.average(vals, weights=ws))
                    out.append(Prediction(str(int(np.clip(round(mean), lo, hi))), extra={"mean": mean}))
                    continue
            elif items:
                votes: Counter[str] = Counter()
                for it in items:
                    votes[it.label or ""] += max(it.score or 0.0, 0.0) + 1e-3
                out.append(Prediction(votes.most_common(1)[0][0]))
                continue
            out.append(Prediction(self.fallback_, extra={"fallback": True}))
        return out


class MajorityPredictor:
    """The population's most frequent label, whatever the input."""

    name = "majority"

    def fit(self, labels: Sequence[str]) -> MajorityPredictor:
        if not labels:
            raise ValueError("MajorityPredictor.fit needs at least one label")
        self.label_ = Counter(labels).most_common(1)[0][0]
        return self

    def predict(self, task: Task, inputs: Sequence[Any], choices: Sequence[Sequence[str]]) -> list[Prediction]:
        return [Prediction(self.label_) for _ in inputs]


class UserMeanPredictor:
    """The mean of the user's own earlier labels (rounded), else the population majority.

    Reads the labels from each input's ``user_labels`` (set by the runner from the
    user's eligible history only).
    """

    name = "user-mean"

    def fit(self, labels: Sequence[str]) -> UserMeanPredictor:
        self.fallback_ = MajorityPredictor().fit(labels).label_
        return self

    def predict_labels(self, user_labels: Sequence[Sequence[float]]) -> list[Prediction]:
        return [
            Prediction(str(round(float(np.mean(ls)))) if ls else self.fallback_, extra={"n": len(ls)})
            for ls in user_labels
        ]
