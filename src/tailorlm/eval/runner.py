"""Run one method on one task for a sample of users and score it.

The same split (by seed) gives every method the same users and queries; the
population the method fits on never includes an evaluated user (user split).
Per-example rows keep what was used (scope, retrieved ids, prompt tokens) so any
number in a table can be traced back to prompts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tailorlm.data import Store
from tailorlm.eval.metrics import classification_scores, generation_scores, rating_scores
from tailorlm.eval.splits import make_split
from tailorlm.personalize import Query, parse_method_spec
from tailorlm.personalize.base import eligible_history
from tailorlm.tasks import get_task
from tailorlm.tasks.predict import (
    ChoicePredictor,
    GeneratePredictor,
    MajorityPredictor,
    Prediction,
    RetrievalVotePredictor,
    UserMeanPredictor,
)

__all__ = ["PREDICTORS", "RunResult", "run_method"]

PREDICTORS = (
    "auto",
    "generate",
    "choice",
    "choice-calibrated",
    "retrieval-vote",
    "majority",
    "user-mean",
)


@dataclass
class RunResult:
    method: str
    task: str
    predictor: str
    split: dict[str, Any]
    metrics: dict[str, float]
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _default_predictor(kind: str) -> str:
    return "choice-calibrated" if kind in ("rating", "classification") else "generate"


def run_method(
    store: Store,
    *,
    method: str,
    task: str,
    n_users: int = 50,
    split: Literal["user", "time"] = "user",
    seed: int = 0,
    predictor: str = "auto",
    generator: Any = None,
    embedder: Any = None,
    budget_tokens: int = 1024,
    k: int | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Evaluate ``method`` (a spec such as ``"rag-bm25+profile"``) on ``task``.

    ``overrides`` maps a spec part to config fields, e.g. ``{"rag-bm25": {"k": 8, "persona_by": "gender"}}``.
    """
    start = time.perf_counter()
    t = get_task(task)
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; use one of {PREDICTORS}")
    pred_name = _default_predictor(t.kind) if predictor == "auto" else predictor
    overrides = {part: dict(cfg) for part, cfg in (overrides or {}).items()}
    if k is not None:  # --k applies to every retrieval step of the spec
        for part in method.split("+"):
            if part.startswith(("rag", "recency", "random")):
                overrides.setdefault(part, {})["k"] = k
    personalizer = parse_method_spec(
        method,
        collaborators={"generator": generator, "embedder": embedder},
        overrides=overrides,
        budget_tokens=budget_tokens,
        token_counter=None,
    )
    the_split, queries = make_split(store, task, kind=split, n_users=n_users, seed=seed)
    personalizer.fit(store, list(the_split.population))
    examples = [queries[key] for key in the_split.queries]
    inputs, qs = [], []
    for i, ex in enumerate(examples):
        q = Query.from_example(ex, choices=ex.metadata.get("choices", ()))
        qs.append(q)
        inputs.append(personalizer.personalize(ex.user_id, q))
        if progress:
            progress(i + 1, 2 * len(examples))
    population_labels = [
        ex.target
        for ex in store.get_examples(task=task)
        if ex.target is not None and ex.user_id in set(the_split.population)
    ]
    users = [ex.user_id for ex in examples]
    predictions = _predict(pred_name, t, inputs, qs, users, store, generator, population_labels)
    if progress:
        progress(2 * len(examples), 2 * len(examples))

    golds = [ex.target or "" for ex in examples]
    answers = [p.answer for p in predictions]
    if t.kind == "rating":
        metrics = rating_scores(
            answers,
            [float(g) for g in golds],  # type: ignore[arg-type]
            low=int(t.labels[0]),
            high=int(t.labels[-1]),
        )
    elif t.kind == "classification":
        metrics = classification_scores(answers, golds)  # type: ignore[arg-type]
    else:
        metrics = generation_scores([a if isinstance(a, str) else None for a in answers], golds)
    metrics["prompt_tokens"] = sum(p.record.prompt_tokens for p in inputs) / max(1, len(inputs))
    rows = [
        {
            "user_id": ex.user_id,
            "example_id": ex.example_id,
            "gold": ex.target,
            "answer": p.answer,
            "raw": p.raw,
            "scope": inp.record.scope,
            "persona": inp.record.persona_id,
            "prompt_tokens": inp.record.prompt_tokens,
            "retrieved": [r["id"] for r in inp.record.retrieved],
        }
        for ex, p, inp in zip(examples, predictions, inputs, strict=True)
    ]
    return RunResult(
        method=method,
        task=task,
        predictor=pred_name,
        split=the_split.to_dict(),
        metrics=metrics,
        seconds=time.perf_counter() - start,
        rows=rows,
    )


def _predict(name, task, inputs, queries, users, store, generator, population_labels) -> list[Prediction]:
    choices = [q.choices for q in queries]
    if name == "generate":
        if generator is None:
            raise ValueError("the 'generate' predictor needs a generator")
        return GeneratePredictor(generator).predict(task, inputs, choices)
    if name in ("choice", "choice-calibrated"):
        if generator is None:
            raise ValueError(f"the {name!r} predictor needs a generator that can score choices")
        return ChoicePredictor(generator, calibrate=name == "choice-calibrated").predict(task, inputs, choices)
    if name == "retrieval-vote":
        return RetrievalVotePredictor().fit(population_labels).predict(task, inputs, choices)
    if name == "majority":
        return MajorityPredictor().fit(population_labels).predict(task, inputs, choices)
    if name == "user-mean":
        return _user_mean(task, queries, users, store, population_labels)
    raise ValueError(f"unknown predictor {name!r}")


def _user_mean(task, queries, users, store, population_labels) -> list[Prediction]:
    """Mean of each user's own eligible earlier labels (same leakage guards as retrieval)."""
    labels = []
    for q, uid in zip(queries, users, strict=True):
        hist = eligible_history(store, uid, q)
        labels.append([e.rating for e in hist if e.rating is not None])
    return UserMeanPredictor().fit(population_labels).predict_labels(labels)
