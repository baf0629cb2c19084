"""User-level heads on top of a global model: personalization at user scope that needs no
LLM weights, and the global scores they are measured against.

A global model reads the input; a user head learns, from the user's own labelled history,
how this user departs from the population, shrunk toward "no departure" with a strength
chosen on validation users (:mod:`tailorlm.eval.selection`). Every shrinkage grid contains
``inf`` (no personalization at all), so a validation choice can say personalization does
not help, and the row then reports exactly the global model.

- :class:`ItemMeanHead` (not personalized): the crowd's mean label for the same item (the
  other users' answers), shrunk toward the text model's expected label with strength ``m``;
  the text model alone for items nobody else rated. The strongest cheap global score.
- :class:`UserOffsetHead`: that score plus the user's mean residual on their history (own
  label minus the global score of the same item), times ``n / (n + alpha)``. For subjective
  annotation: the crowd consensus plus the annotator's offset.
- :class:`UserPriorHead`: the text model's label distribution times the user's label prior
  over the population's (prior shift), the user's prior shrunk toward the population's.
- :class:`UserMajorityHead`: the user's most frequent earlier label.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tailorlm.tasks.base import Task
from tailorlm.tasks.predict import Prediction, decide_distribution
from tailorlm.tasks.text_model import GlobalTextPredictor

__all__ = [
    "HEADS",
    "INF",
    "GlobalScorer",
    "ItemMeanHead",
    "Observation",
    "UserMajorityHead",
    "UserOffsetHead",
    "UserPriorHead",
]

INF = float("inf")


@dataclass(frozen=True)
class Observation:
    """One labelled (or query) input: a population example or a user's history entry."""

    text: str
    value: str | None  # the label as the task writes it ("4", "comedy"); None for a query
    user_id: str | None = None
    item_id: str | None = None


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _bounds(task: Task) -> tuple[float, float]:
    return float(task.labels[0]), float(task.labels[-1])


def _shrunk(total: float, n: int, prior: float, strength: float) -> float:
    """(total + strength * prior) / (n + strength), with strength inf meaning the prior."""
    if strength == INF or n + strength == 0:
        return prior
    return (total + strength * prior) / (n + strength)


class GlobalScorer:
    """The global (non-personalized) parts every head shares: the text model fitted on the
    population's inputs (TF-IDF, or ``encoder``'s vectors), the crowd's labels per item, and
    the population's label prior."""

    def __init__(self, *, encoder: Any = None) -> None:
        self.encoder = encoder

    def fit(self, task: Task, population: Sequence[Observation]) -> GlobalScorer:
        labelled = [o for o in population if o.value is not None]
        if not labelled:
            raise ValueError(f"task {task.name!r}: a head needs labelled population examples to fit on")
        texts, labels = [o.text for o in labelled], [o.value for o in labelled]
        self.text_model_ = GlobalTextPredictor(encoder=self.encoder).fit(task, texts, labels)
        # per item and per (item, user): sum and count, so "everyone but this user" is O(1)
        self.item_: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self.item_user_: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
        for o in labelled:
            if o.item_id is not None and (v := _num(o.value)) is not None:
                for acc in (self.item_[o.item_id], self.item_user_[(o.item_id, o.user_id or "")]):
                    acc[0] += v
                    acc[1] += 1
        counts = Counter(o.value for o in labelled)
        self.prior_ = {label: c / len(labelled) for label, c in counts.items()}
        self.majority_ = counts.most_common(1)[0][0]
        self._expected: dict[str, float] = {}
        return self

    def distributions(self, task: Task, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        return self.text_model_.distributions(task, texts)

    def expectations(self, task: Task, texts: Sequence[str]) -> np.ndarray:
        """The text model's expected label per text (cached: history texts recur across rows)."""
        todo = sorted({t for t in texts if t not in self._expected})
        if todo:
            classes, probs = self.distributions(task, todo)
            values = np.asarray([float(c) for c in classes])
            self._expected.update(zip(todo, (probs @ values).tolist(), strict=True))
        return np.asarray([self._expected[t] for t in texts], dtype=float)

    def crowd(self, item_id: str | None, exclude_user: str | None) -> tuple[float, int]:
        """Sum and count of the other users' labels of ``item_id`` (never the user's own)."""
        if item_id is None or item_id not in self.item_:
            return 0.0, 0
        total, n = self.item_[item_id]
        own = self.item_user_.get((item_id, exclude_user or ""))
        if own is not None:
            total, n = total - own[0], n - own[1]
        return total, int(n)

    def scores(self, task: Task, obs: Sequence[Observation], m: float) -> np.ndarray:
        """Crowd mean of each item shrunk toward the text model's expectation with strength m."""
        expected = self.expectations(task, [o.text for o in obs])
        out = np.empty(len(obs))
        for i, (o, g) in enumerate(zip(obs, expected, strict=True)):
            total, n = self.crowd(o.item_id, o.user_id)
            out[i] = g if n == 0 else _shrunk(total, n, g, m)
        return out


def _decide_number(task: Task, value: float, decision: str) -> Prediction:
    lo, hi = _bounds(task)
    x = float(np.clip(value, lo, hi))
    answer = str(round(x)) if decision == "round" else f"{x:.4f}"
    return Prediction(answer, extra={"score": round(x, 4)})


class _Head:
    """What :func:`tailorlm.eval.selection.fit_head` needs: a grid of settings, ``fit`` on
    population observations, and ``predict`` under one setting of the grid."""

    name: ClassVar[str]
    personalized: ClassVar[bool]
    kinds: ClassVar[tuple[str, ...]] = ("rating",)
    encoder: Any = None  # texts -> vectors for the global text model; None: TF-IDF

    def grid(self, task: Task) -> dict[str, tuple[Any, ...]]:
        return {}

    def check(self, task: Task) -> None:
        if task.kind not in self.kinds:
            raise ValueError(f"the {self.name!r} predictor applies to {' or '.join(self.kinds)} tasks, not {task.kind}")

    def fit(self, task: Task, population: Sequence[Observation]) -> _Head:
        self.check(task)
        self.scorer_ = GlobalScorer(encoder=self.encoder).fit(task, population)
        return self

    def predict(
        self,
        task: Task,
        queries: Sequence[Observation],
        histories: Sequence[Sequence[Observation]],
        choices: Sequence[Sequence[str]],
        **params: Any,
    ) -> list[Prediction]:
        raise NotImplementedError


class ItemMeanHead(_Head):
    """The crowd's mean label for the item, shrunk toward the text model (not personalized)."""

    name = "item-mean"
    personalized = False

    def grid(self, task: Task) -> dict[str, tuple[Any, ...]]:
        return {"m": (INF, 10.0, 3.0, 1.0, 0.0), "decision": ("round", "raw")}

    def predict(self, task, queries, histories, choices, *, m: float = 3.0, decision: str = "round"):  # type: ignore[no-untyped-def, override]
        return [_decide_number(task, s, decision) for s in self.scorer_.scores(task, queries, m)]


class UserOffsetHead(_Head):
    """The global score plus the user's shrunk mean residual on their own history."""

    name = "user-offset"
    personalized = True

    def grid(self, task: Task) -> dict[str, tuple[Any, ...]]:
        alphas = (INF, 30.0, 10.0, 5.0, 2.0, 1.0, 0.0)
        return {"alpha": alphas, "m": (INF, 10.0, 3.0, 1.0, 0.0), "decision": ("round", "raw")}

    def predict(  # type: ignore[override]
        self, task, queries, histories, choices, *, alpha: float = 5.0, m: float = 3.0, decision: str = "round"
    ) -> list[Prediction]:
        base = self.scorer_.scores(task, queries, m)
        out: list[Prediction] = []
        for hist, b in zip(histories, base, strict=True):
            own = [(h, v) for h in hist if (v := _num(h.value)) is not None]
            offset = 0.0
            if own and alpha != INF:
                residual = np.asarray([v for _, v in own]) - self.scorer_.scores(task, [h for h, _ in own], m)
                offset = float(residual.sum()) / (len(own) + alpha)
            p = _decide_number(task, b + offset, decision)
            p.extra |= {"global": round(float(b), 4), "offset": round(offset, 4), "n": len(own)}
            out.append(p)
        return out


class UserPriorHead(_Head):
    """The text model's distribution shifted by the user's shrunk label prior."""

    name = "user-prior"
    personalized = True
    kinds = ("rating", "classification")

    def grid(self, task: Task) -> dict[str, tuple[Any, ...]]:
        return {"alpha": (INF, 30.0, 10.0, 5.0, 2.0, 1.0)}

    def predict(self, task, queries, histories, choices, *, alpha: float = 5.0):  # type: ignore[no-untyped-def, override]
        classes, probs = self.scorer_.distributions(task, [q.text for q in queries])
        prior = np.asarray([self.scorer_.prior_.get(c, 0.0) for c in classes])
        out = []
        for row, hist, ch in zip(probs, histories, choices, strict=True):
            counts = Counter(h.value for h in hist if h.value is not None)
            n = sum(counts.values())
            own = np.asarray([_shrunk(counts.get(c, 0), n, prior[i], alpha) for i, c in enumerate(classes)])
            shifted = row * own / np.maximum(prior, 1e-6)
            shifted = shifted / shifted.sum() if shifted.sum() > 0 else row
            out.append(decide_distribution(task, classes, shifted, tuple(ch)))
        return out


class UserMajorityHead(_Head):
    """The user's most frequent earlier label (ties: the earliest seen), else the population's."""

    name = "user-majority"
    personalized = True
    kinds = ("rating", "classification")

    def predict(self, task, queries, histories, choices, **params):  # type: ignore[no-untyped-def, override]
        out = []
        for hist, ch in zip(histories, choices, strict=True):
            counts = Counter(h.value for h in hist if h.value is not None and (not ch or h.value in ch))
            label = counts.most_common(1)[0][0] if counts else self.scorer_.majority_
            out.append(Prediction(label, extra={"n": sum(counts.values())}))
        return out


HEADS: dict[str, type[_Head]] = {h.name: h for h in (ItemMeanHead, UserOffsetHead, UserPriorHead, UserMajorityHead)}
