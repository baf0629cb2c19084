"""Predictors: from a personalized model input to a task answer.

For downstream tasks a 135M model answering freely is a poor predictor (it
mostly says "1", and many answers do not parse), so several predictors are
offered and compared side by side:

- :class:`GeneratePredictor`: free generation, then robust parsing (the naive baseline).
- :class:`ChoicePredictor`: constrained choice over the allowed labels by
  log-probability, optionally with contextual calibration (Zhao et al. 2021):
  divide by the label probabilities the model gives a content-free input ("N/A")
  under the *same* personalized context, then renormalize. Never unparsable.
  With ``prior_shift`` (the ``choice-prior`` predictor) the label distribution of an
  adapter trained class-balanced is multiplied by the population's label prior: balanced
  training teaches p(y|x) under a uniform prior, so the population's posterior is that
  times p(y). Ratings are then decided by the median (the MAE-optimal point).
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
    "decide_distribution",
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
    """The same conversation with the task input's variable part replaced by 'N/A': the
    context and the task's instruction are kept (also when the input carries it, as LaMP's do)."""
    request = task.content_free_request(messages[-1]["content"], tuple(choices))
    return [*messages[:-1], {"role": "user", "content": request}]


def _label_orders(labels: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """``n`` cyclic shifts of ``labels`` (the identity first), evenly spread: each label
    takes several positions, so a preference for a position averages out."""
    n = max(1, min(n, len(labels)))
    step = len(labels) / n
    return [tuple(labels[int(i * step) :]) + tuple(labels[: int(i * step)]) for i in range(n)]


def _variants(p: Any, task: Task, labels: Sequence[str], permutations: int) -> list[list[dict[str, str]]]:
    """The row's conversation with the listed labels in each order (just the row when it cannot
    be reordered: the labels are not shown, or permutations is 1)."""
    messages = p.messages
    out = []
    for order in _label_orders(labels, permutations)[1:]:
        request = task.reorder_choices(messages[-1]["content"], labels, order)
        if request is None:
            break
        out.append([*messages[:-1], {"role": "user", "content": request}])
    return [messages, *out]


class ChoicePredictor:
    """Pick the label with the highest (calibrated) log-probability.

    Two guards against the label order biasing the answer (a small model scores the first
    listed tag highest whatever the input):

    - calibration divides by the probabilities of a content-free input that keeps the same
      instruction and the same listed order, which cancels a position preference;
    - ``permutations`` > 1 rewrites the listed labels in that many cyclic orders and
      averages the log-probabilities (where the request lists the labels).

    Args:
        scorer: a generator that implements ``score_choices``.
        calibrate: apply contextual calibration against the content-free input.
        expected: for rating tasks, answer the probability-weighted mean label
            rounded (better MAE on skewed labels) instead of the argmax.
        permutations: label orders to average over (1: the given order only).
        prior_shift: multiply the distribution by the population's label prior (learned by
            :meth:`fit`) and decide ratings by its median: the decision for an adapter trained
            class-balanced, which otherwise over-predicts rare labels.
    """

    def __init__(
        self,
        scorer: ChoiceScorer,
        *,
        calibrate: bool = True,
        expected: bool = False,
        batch_size: int = 8,
        permutations: int = 1,
        prior_shift: bool = False,
    ) -> None:
        if not isinstance(scorer, ChoiceScorer):
            raise TypeError(f"{type(scorer).__name__} cannot score choices (no score_choices method)")
        if permutations < 1:
            raise ValueError(f"permutations must be >= 1, got {permutations}")
        self.scorer = scorer
        self.calibrate = calibrate
        self.expected = expected
        self.batch_size = batch_size
        self.permutations = permutations
        self.prior_shift = prior_shift
        self.prior_: dict[str, float] | None = None
        self.name = "choice" + ("-calibrated" if calibrate else "") + ("-expected" if expected else "")
        self.name += "-prior" if prior_shift else ""

    def fit(self, labels: Sequence[str]) -> ChoicePredictor:
        """Learn the population's label prior (add-one smoothed) that ``prior_shift`` applies."""
        counts = Counter(str(x) for x in labels if x is not None)
        if self.prior_shift and not counts:
            raise ValueError("prior_shift needs the population's labels; got none")
        self.prior_ = {c: n + 1.0 for c, n in counts.items()}
        return self

    def _shifted(self, probs: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
        if self.prior_ is None:
            raise RuntimeError("ChoicePredictor(prior_shift=True) needs fit(population labels) first")
        shifted = probs * np.asarray([self.prior_.get(c, 1.0) for c in labels])
        return shifted / shifted.sum()

    def _probs(self, p: Any, task: Task, labels: tuple[str, ...]) -> np.ndarray:
        variants = _variants(p, task, labels, self.permutations)
        free = [content_free(v, task, labels) for v in variants] if self.calibrate else []
        # the extra rows keep the same personalization (context, adapter, soft prompt)
        logp = np.asarray(score_inputs(self.scorer, [p], labels, extra=[*variants[1:], *free]), dtype=float)
        n = len(variants)
        probs = _softmax(logp[:n].mean(axis=0))
        if self.calibrate:
            probs = probs / np.maximum(_softmax(logp[n:].mean(axis=0)), 1e-12)
            probs = probs / probs.sum()
        return probs

    def predict(self, task: Task, inputs: Sequence[Any], choices: Sequence[Sequence[str]]) -> list[Prediction]:
        out: list[Prediction] = []
        for p, ch in zip(inputs, choices, strict=True):
            labels = _labels(task, ch)
            probs = self._probs(p, task, labels)
            if self.prior_shift:
                probs = self._shifted(probs, labels)
                pred = decide_distribution(task, list(labels), probs, labels)
                pred.raw, pred.extra["probs"] = str(pred.answer), probs.round(4).tolist()
                out.append(pred)
                continue
            if self.expected and task.kind == "rating":
                value = float(np.dot(probs, [float(x) for x in labels]))
                answer = str(int(np.clip(round(value), int(labels[0]), int(labels[-1]))))
            else:
                answer = labels[int(np.argmax(probs))]
            out.append(Prediction(answer, raw=answer, extra={"probs": probs.round(4).tolist()}))
        return out


def decide_distribution(task: Task, classes: list[str], probs: np.ndarray, choices: Sequence[str]) -> Prediction:
    """The median label for ratings (the MAE-optimal point; the expectation, for RMSE readers,
    goes in ``extra``), else the likeliest label among ``choices`` (any, when empty)."""
    if task.kind == "rating":
        values = np.asarray([float(c) for c in classes])
        order = np.argsort(values)
        median = values[order][int(np.searchsorted(np.cumsum(probs[order]), 0.5))]
        return Prediction(f"{median:g}", extra={"expected": float(probs @ values)})
    allowed = [i for i, c in enumerate(classes) if not choices or c in choices]
    if not allowed:  # none of this question's labels is among the classes
        return Prediction(choices[0] if choices else None, extra={"unseen_labels": True})
    best = max(allowed, key=lambda i: probs[i])
    return Prediction(classes[best], extra={"p": round(float(probs[best]), 4)})


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
