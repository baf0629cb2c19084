"""Scoring memory QA (task kind ``qa``, e.g. LoCoMo's ``locomo-qa``): three views of one answer.

Per question:

- ``f1``: SQuAD's answer token F1 against the reference (:func:`~tailorlm.eval.metrics.token_f1`).
  Adversarial questions (LoCoMo category 5, whose reference is "Not mentioned in the
  conversation") follow LoCoMo's own rule instead: 1.0 when the answer says the
  conversation does not mention it ("not mentioned", "no information available"), else 0.0; token F1
  against the abstention phrase would reward any answer that happens to say "conversation".
- ``evidence_recall``: recall@k of the question's evidence dia_ids among the documents
  the method put in the prompt's history block (the ids in the usage record, after the
  token budget: what the model actually saw), k being the row's k. Retrieval from
  another user's history (a persona or global fallback) counts as retrieving nothing.
  None for a question without evidence (undefined there; left out of means and CIs, where
  LoCoMo's script counts it as 1.0).
- ``judge``: 1.0 when the :class:`~tailorlm.eval.judge.CorrectnessJudge` says the answer
  agrees with the reference, else 0.0; only when a judge model is given.

Per-category figures with CIs come from the rows' ``category`` (see
:func:`tailorlm.eval.compare.with_uncertainty`).

Left out: LoCoMo's own F1 variants (Porter stemming, multi-hop answers split on commas,
open-domain answers cut at ";"): the standard SQuAD F1 is used for every category.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tailorlm.eval.judge import CorrectnessJudge
from tailorlm.eval.metrics import evidence_recall, token_f1

__all__ = ["ADVERSARIAL", "category_of", "is_abstention", "qa_answer_score", "retrieved_doc_ids", "score_qa"]

ADVERSARIAL = 5  # LoCoMo's category number of unanswerable questions
_ABSTENTION = re.compile(r"not mentioned|no information available", re.IGNORECASE)  # LoCoMo's two phrases


def is_abstention(answer: str) -> bool:
    """Whether an answer says the conversation does not tell (LoCoMo's check for category 5)."""
    return bool(_ABSTENTION.search(answer))


def qa_answer_score(answer: str | None, reference: str, category: Any) -> float:
    """The ``f1`` of one answer: token F1, or for adversarial questions the abstention rule.

    Example:
        >>> qa_answer_score("7 May 2023", "7 May 2023", 2), qa_answer_score("Not mentioned.", "x", 5)
        (1.0, 1.0)
    """
    text = answer or ""
    if category == ADVERSARIAL:
        return float(is_abstention(text))
    return token_f1(text, reference)


def category_of(metadata: Mapping[str, Any]) -> str | None:
    """A question's category as rows and reports show it, ``"2 temporal"``; None without one."""
    number, name = metadata.get("category"), metadata.get("category_name")
    if number is None:
        return None
    return f"{number} {name}" if name and str(name) != str(number) else str(number)


def retrieved_doc_ids(record: Any) -> list[str]:
    """The user's own document ids in the prompt's history block (``"doc:D1:3"`` -> ``"D1:3"``)."""
    if record.scope != "user":
        return []
    return [r["id"][4:] for r in record.retrieved if r["block"] == "history" and str(r["id"]).startswith("doc:")]


def _mean(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else 0.0


def score_qa(
    queries: Sequence[Any],
    answers: Sequence[Any],
    golds: Sequence[str],
    inputs: Sequence[Any],
    *,
    judge: CorrectnessJudge | None = None,
) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """Aggregate metrics and per-question values of a memory-QA run (see the module docstring).

    ``queries`` carry each question's metadata (``category``, ``evidence``); ``inputs`` are
    the personalized inputs whose usage records name what was retrieved. Means leave out
    None values; ``evidence_n`` counts the questions that have evidence.
    """
    texts = [a if isinstance(a, str) else "" for a in answers]
    per: dict[str, list[Any]] = {
        "f1": [
            qa_answer_score(a, g, q.metadata.get("category")) for a, g, q in zip(texts, golds, queries, strict=True)
        ],
        "evidence_recall": [
            evidence_recall(q.metadata.get("evidence") or [], retrieved_doc_ids(inp.record))
            for q, inp in zip(queries, inputs, strict=True)
        ],
    }
    if judge is not None:
        per["judge"] = judge.grade([(q.text, g, a) for q, g, a in zip(queries, golds, texts, strict=True)])
    metrics = {name: _mean(values) for name, values in per.items()}
    metrics["evidence_n"] = sum(v is not None for v in per["evidence_recall"])
    metrics["unparsable"] = sum(a is None for a in answers) / max(1, len(answers))
    metrics["n"] = len(answers)
    metrics["prompt_tokens"] = sum(p.record.prompt_tokens for p in inputs) / max(1, len(inputs))
    return metrics, per
