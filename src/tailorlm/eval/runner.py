"""Run one method on one task for a sample of users and score it.

The same split (by seed) gives every method the same users and queries; the
population the method fits on never includes an evaluated user (user split).
Per-example rows keep what was used (scope, retrieved ids, prompt tokens) so any
number in a table can be traced back to prompts.
"""

from __future__ import annotations

import resource
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tailorlm.data import Store
from tailorlm.eval.judge import CorrectnessJudge
from tailorlm.eval.memqa import category_of, score_qa
from tailorlm.eval.metrics import (
    classification_scores,
    generation_scores,
    meteor_per_example,
    rating_errors,
    rating_scores,
    rouge_per_example,
)
from tailorlm.eval.selection import fit_head
from tailorlm.eval.splits import Split, make_split
from tailorlm.personalize import Query, parse_method_spec
from tailorlm.personalize.base import eligible_history
from tailorlm.tasks import get_task
from tailorlm.tasks.heads import HEADS as _HAND_BUILT_HEADS
from tailorlm.tasks.heads import Observation
from tailorlm.tasks.heuristics import CopyInputPredictor, FirstWordsPredictor
from tailorlm.tasks.predict import (
    ChoicePredictor,
    GeneratePredictor,
    MajorityPredictor,
    Prediction,
    RetrievalVotePredictor,
    UserMeanPredictor,
)
from tailorlm.tasks.stack import UserStackHead
from tailorlm.tasks.text_model import GlobalTextPredictor, LLMTextEncoder

__all__ = ["LLM_PREDICTORS", "PERSONALIZED_PREDICTORS", "PREDICTORS", "RunResult", "is_personalized", "run_method"]

PREDICTORS = (
    "auto",
    "generate",
    "choice",
    "choice-calibrated",
    "choice-prior",
    "retrieval-vote",
    "majority",
    "user-mean",
    "global-text",
    "item-mean",
    "user-offset",
    "user-prior",
    "user-majority",
    "user-stack",
    "llm-text",
    "user-stack-llm",
    "copy-input",
    "first-words",
)
# Predictors that read the user's own data, whatever the method: a row with one of them is
# personalized even with the identity method (the gain table tells the two kinds apart).
PERSONALIZED_PREDICTORS = frozenset(
    {"user-mean", "user-majority", "user-offset", "user-prior", "user-stack", "user-stack-llm", "retrieval-vote"}
)
# The frozen LLM as the text encoder under trained heads (representation learning, no prompt).
LLM_HEADS = frozenset({"user-stack-llm"})
_PROMPTED = frozenset({"generate", "choice", "choice-calibrated"})  # need no labelled population
LLM_PREDICTORS = _PROMPTED | {"choice-prior", "llm-text"} | LLM_HEADS
NON_PERSONAL_METHODS = frozenset({"identity", "lora-global"})  # spec parts that read no user's own data
HEADS = _HAND_BUILT_HEADS | {UserStackHead.name: UserStackHead}


def is_personalized(method: str, predictor: str) -> bool:
    """Whether a row uses the user's own data: a method part or a predictor that reads it."""
    parts = {p.strip() for p in method.split("+")}
    return not parts <= NON_PERSONAL_METHODS or predictor in PERSONALIZED_PREDICTORS


PREDICT_CHUNK = 8  # examples personalized, then predicted, at a time: predictors' batch (_personalize_and_predict)


@dataclass
class RunResult:
    method: str
    task: str
    predictor: str
    split: dict[str, Any]
    metrics: dict[str, float]
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Per-query values the bootstrap resamples (same order as ``rows``): e.g. abs_error
    # and sq_error for ratings, rouge1/rougeL/meteor for generation, accuracy for labels,
    # f1/evidence_recall/judge for memory QA (None where a value is undefined for a query).
    per_example: dict[str, list[float | None]] = field(default_factory=dict)
    # System figures measured during the run: personalization latency, prediction time,
    # generated tokens, peak memory.
    system: dict[str, Any] = field(default_factory=dict)
    # Settings chosen on validation users of the population (eval.selection), if the predictor has any.
    chosen: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _default_predictor(kind: str) -> str:
    return "choice-calibrated" if kind in ("rating", "classification") else "generate"


def _predictor_name(kind: str, predictor: str) -> str:
    """The predictor to run: validated, with ``"auto"`` resolved from the task kind."""
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; use one of {PREDICTORS}")
    return _default_predictor(kind) if predictor == "auto" else predictor


def _with_k(method: str, overrides: Mapping[str, Mapping[str, Any]] | None, k: int | None) -> dict[str, dict[str, Any]]:
    """Copies of ``overrides``, with ``k`` set on every retrieval step of the spec."""
    out = {part: dict(cfg) for part, cfg in (overrides or {}).items()}
    if k is not None:  # --k applies to every retrieval step of the spec
        for part in method.split("+"):
            if part.startswith(("rag", "recency", "random")):
                out.setdefault(part, {})["k"] = k
    return out


@dataclass
class _Outputs:
    """What personalizing and predicting gathered, one entry per example in order."""

    inputs: list[Any] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)
    predict_s: float = 0.0


@dataclass
class _PredictContext:
    """What every chunk's prediction needs besides the chunk itself."""

    pred_name: str
    task: Any
    store: Store
    generator: Any
    population_labels: list[Any]
    population_texts: list[str] = field(default_factory=list)
    text_model: Any = None  # the global-text predictor, fitted on first use
    labelled: list[Any] = field(default_factory=list)  # the population's labelled examples
    seed: int = 0
    head: Any = None  # a user-level head (tasks.heads), fitted on first use with its settings chosen
    chosen: dict[str, Any] = field(default_factory=dict)  # on validation users (eval.selection)


def _personalize_and_predict(
    personalizer: Any,
    examples: Sequence[Any],
    pc: _PredictContext,
    progress: Callable[[int, int], None] | None,
) -> _Outputs:
    """Personalize and predict a chunk at a time.

    A parametric method loads one adapter per user, and its LRU must still hold a chunk's
    adapters when the chunk is predicted. The chunk is the predictors' batch size, so
    generator batches are the same as in one pass.
    """
    out = _Outputs()
    for lo in range(0, len(examples), PREDICT_CHUNK):
        chunk = examples[lo : lo + PREDICT_CHUNK]
        for ex in chunk:
            q = Query.from_example(ex)
            out.queries.append(q)
            t0 = time.perf_counter()
            out.inputs.append(personalizer.personalize(ex.user_id, q))
            out.latency_ms.append((time.perf_counter() - t0) * 1e3)
            if progress:
                progress(len(out.inputs) + len(out.predictions), 2 * len(examples))
        t_predict = time.perf_counter()
        out.predictions += _predict(
            pc.pred_name,
            pc.task,
            out.inputs[lo:],
            out.queries[lo:],
            [ex.user_id for ex in chunk],
            pc,
        )
        out.predict_s += time.perf_counter() - t_predict
        if progress:
            progress(len(out.inputs) + len(out.predictions), 2 * len(examples))
    return out


def _score(
    t: Any,
    answers: Sequence[Any],
    golds: Sequence[str],
    inputs: Sequence[Any],
    *,
    meteor: bool,
    queries: Sequence[Query] = (),
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Aggregate metrics (plus mean prompt tokens and METEOR) and the per-query values."""
    if t.kind == "rating":
        metrics = rating_scores(
            answers,
            [float(g) for g in golds],  # type: ignore[arg-type]
            low=int(t.labels[0]),
            high=int(t.labels[-1]),
        )
    elif t.kind == "classification":
        label_set = {c for q in queries for c in q.choices} or set(t.labels)
        metrics = classification_scores(answers, golds, labels=sorted(label_set))  # type: ignore[arg-type]
    else:
        metrics = generation_scores([a if isinstance(a, str) else None for a in answers], golds)
    metrics["prompt_tokens"] = sum(p.record.prompt_tokens for p in inputs) / max(1, len(inputs))
    per_example = _per_example(t, answers, golds, meteor=meteor)
    if "meteor" in per_example:
        metrics["meteor"] = sum(per_example["meteor"]) / max(1, len(per_example["meteor"]))
    return metrics, per_example


def _rows(examples: Sequence[Any], predictions: Sequence[Prediction], inputs: Sequence[Any]) -> list[dict[str, Any]]:
    """Per-example rows: what was used, so any number can be traced back to prompts."""
    return [
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


# long: one linear pipeline (split, fit, predict, score) with its documented options
def run_method(
    store: Store,
    *,
    method: str,
    task: str,
    n_users: int = 50,
    split: str = "auto",
    seed: int = 0,
    predictor: str = "auto",
    generator: Any = None,
    embedder: Any = None,
    budget_tokens: int = 1024,
    k: int | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    meteor: bool = False,
    role: Literal["test", "validation"] = "test",
    reserve: int | None = None,
    queries_per_user: int = 1,
) -> RunResult:
    """Evaluate ``method`` (a spec such as ``"rag-bm25+profile"``) on ``task``.

    ``split``: auto | user | time | given (see :mod:`tailorlm.eval.splits`); the split is made
    before anything is fitted, so an impossible one fails before any work.

    ``overrides`` maps a spec part to config fields, e.g. ``{"rag-bm25": {"k": 8, "persona_by": "gender"}}``.

    ``role="validation"`` evaluates on validation users instead, disjoint from any test
    sample of up to ``reserve`` users (:func:`~tailorlm.eval.splits.make_split`): what
    suites choose their rows and settings on. ``queries_per_user``: each evaluated user's
    latest examples up to this many are queries, each with only its earlier history.
    """
    start = time.perf_counter()
    t = get_task(task)
    pred_name = _predictor_name(t.kind, predictor)
    the_split, queries = make_split(
        store,
        task,
        kind=split,
        n_users=n_users,
        seed=seed,
        role=role,
        reserve=reserve,
        queries_per_user=queries_per_user,
    )
    personalizer = parse_method_spec(
        method,
        collaborators={"generator": generator, "embedder": embedder},
        overrides=_with_k(method, overrides, k),
        budget_tokens=budget_tokens,
        token_counter=None,
    )
    personalizer.fit(store, list(the_split.population))
    examples = [queries[key] for key in the_split.queries]
    population = set(the_split.population)
    labelled = _population_examples(store, task, the_split, population)
    population_labels = [ex.target for ex in labelled]
    if not population_labels and pred_name not in _PROMPTED | {"copy-input"}:
        raise ValueError(
            f"the {pred_name!r} predictor learns from labelled training examples, and the population of "
            f"task {task!r} has none (for LaMP, load the train questions with their outputs)"
        )
    pc = _PredictContext(pred_name, t, store, generator, population_labels, [ex.input for ex in labelled])
    pc.labelled, pc.seed = labelled, seed
    out = _personalize_and_predict(personalizer, examples, pc, progress)

    golds = [ex.target or "" for ex in examples]
    answers = [p.answer for p in out.predictions]
    rows = _rows(examples, out.predictions, out.inputs)
    if t.kind == "qa":  # memory QA: answer F1, evidence recall@k and the judge, per category
        judge = CorrectnessJudge(generator) if generator is not None else None
        metrics, per_example = score_qa(out.queries, answers, golds, out.inputs, judge=judge)
        for row, ex in zip(rows, examples, strict=True):
            row["category"] = category_of(ex.metadata)
    else:
        metrics, per_example = _score(t, answers, golds, out.inputs, meteor=meteor, queries=out.queries)
    system = _system(out.latency_ms, out.predict_s, out.predictions, pred_name, generator)
    return RunResult(
        method=method,
        task=task,
        predictor=pred_name,
        split=the_split.to_dict(),
        metrics=metrics,
        seconds=time.perf_counter() - start,
        rows=rows,
        per_example=per_example,
        system=system,
        chosen=pc.chosen,
    )


def _population_examples(store: Store, task: str, split: Split, population: set[str]) -> list[Any]:
    """Labelled examples baselines may learn from: the population's, never a query's (a user
    of a time or given split can be both), and under the given split only ``train``'s."""
    queries = set(split.queries)
    return [
        ex
        for ex in store.get_examples(task=task)
        if ex.target is not None
        and ex.user_id in population
        and (ex.user_id, ex.example_id) not in queries
        and (split.kind != "given" or ex.metadata.get("split") == "train")
    ]


def _per_example(t: Any, answers: Sequence[Any], golds: Sequence[str], *, meteor: bool) -> dict[str, list[float]]:
    if t.kind == "rating":
        err = rating_errors(answers, [float(g) for g in golds], low=int(t.labels[0]), high=int(t.labels[-1]))
        return {"mae": [abs(float(e)) for e in err], "sq_error": [float(e) ** 2 for e in err]}
    if t.kind == "classification":
        return {"accuracy": [1.0 if a == g else 0.0 for a, g in zip(answers, golds, strict=True)]}
    if t.kind == "generation":
        preds = [a if isinstance(a, str) else "" for a in answers]
        out = rouge_per_example(preds, list(golds))
        if meteor:
            out["meteor"] = meteor_per_example(preds, list(golds))
        return out
    return {}


def _system(latency_ms: list[float], predict_s: float, predictions: Sequence[Prediction], pred_name: str,
            generator: Any) -> dict[str, Any]:  # fmt: skip
    import numpy as np

    out: dict[str, Any] = {
        "personalize_ms_p50": float(np.percentile(latency_ms, 50)) if latency_ms else 0.0,
        "personalize_ms_p99": float(np.percentile(latency_ms, 99)) if latency_ms else 0.0,
        "predict_seconds": predict_s,
        # ru_maxrss is in KiB on Linux: the peak of the whole process so far, not of this row alone.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    tokenizer = getattr(generator, "tokenizer", None)
    if pred_name == "generate" and callable(tokenizer):
        tokens = sum(len(tokenizer(p.raw or "", add_special_tokens=False)["input_ids"]) for p in predictions)
        out["generated_tokens"] = tokens
        out["generated_tokens_per_s"] = tokens / predict_s if predict_s > 0 else 0.0
    return out


def _predict(name, task, inputs, queries, users, pc: _PredictContext) -> list[Prediction]:
    store, generator, population_labels = pc.store, pc.generator, pc.population_labels
    choices = [q.choices for q in queries]
    if name in ("global-text", "llm-text"):
        if pc.text_model is None:
            encoder = _llm_encoder(generator) if name == "llm-text" else None
            pc.text_model = GlobalTextPredictor(encoder=encoder).fit(task, pc.population_texts, population_labels)
        return pc.text_model.predict(task, [q.text for q in queries], choices)
    if name in HEADS or name in LLM_HEADS:
        return _predict_head(name, task, queries, users, pc)
    if name == "copy-input":
        return CopyInputPredictor().predict(task, [q.text for q in queries])
    if name == "first-words":
        if pc.text_model is None:
            pc.text_model = FirstWordsPredictor().fit(population_labels)
        return pc.text_model.predict(task, [q.text for q in queries])
    if name == "generate":
        if generator is None:
            raise ValueError("the 'generate' predictor needs a generator")
        return GeneratePredictor(generator).predict(task, inputs, choices)
    if name in ("choice", "choice-calibrated"):
        if generator is None:
            raise ValueError(f"the {name!r} predictor needs a generator that can score choices")
        return ChoicePredictor(generator, calibrate=name == "choice-calibrated").predict(task, inputs, choices)
    if name == "choice-prior":  # a class-balanced adapter's distribution times the population prior
        if generator is None:
            raise ValueError("the 'choice-prior' predictor needs a generator that can score choices")
        predictor = ChoicePredictor(generator, calibrate=False, prior_shift=True).fit(population_labels)
        return predictor.predict(task, inputs, choices)
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


def _history_observations(store: Store, task: Any, user_id: str, query: Query) -> list[Observation]:
    """The user's eligible history (the same leakage guards as retrieval) as labelled observations."""
    out = []
    for e in eligible_history(store, user_id, query):
        value = e.label if task.kind == "classification" else (f"{e.rating:g}" if e.rating is not None else None)
        out.append(Observation(e.text, value, user_id, e.item_id))
    return out


_ENCODERS: weakref.WeakKeyDictionary[Any, LLMTextEncoder] = weakref.WeakKeyDictionary()


def _llm_encoder(generator: Any) -> LLMTextEncoder:
    """One encoder (and its memory of encoded texts) per generator: a suite's rows, test and
    validation runs alike, encode the same population texts with the same frozen model."""
    if generator is None:
        raise ValueError("the LLM text predictors need a generator that can encode texts")
    if generator not in _ENCODERS:
        _ENCODERS[generator] = LLMTextEncoder(generator)
    return _ENCODERS[generator]


def _predict_head(name: str, task: Any, queries: Sequence[Query], users: Sequence[str], pc: _PredictContext):  # type: ignore[no-untyped-def]
    """A user-level head: settings chosen on validation users of the population on first use."""
    if pc.head is None:
        history_of = lambda ex: _history_observations(pc.store, task, ex.user_id, Query.from_example(ex))  # noqa: E731
        head = UserStackHead(encoder=_llm_encoder(pc.generator)) if name in LLM_HEADS else HEADS[name]()
        pc.head, pc.chosen = fit_head(head, task, pc.labelled, history_of, seed=pc.seed)
    obs = [Observation(q.text, None, u, q.metadata.get("item_id")) for q, u in zip(queries, users, strict=True)]
    hists = [_history_observations(pc.store, task, u, q) for q, u in zip(queries, users, strict=True)]
    return pc.head.predict(task, obs, hists, [q.choices for q in queries], **pc.head.settings_)
