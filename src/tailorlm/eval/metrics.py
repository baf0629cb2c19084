"""Metrics from maintained libraries, with the LaMP conventions.

ROUGE via ``rouge-score`` (stemming on, as LaMP), BLEU via ``sacrebleu``,
accuracy / macro-F1 via scikit-learn, MAE / RMSE with numpy. An unparsable
rating is scored as the label farthest from gold (LaMP), and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tailorlm.tasks import farthest_rating

__all__ = ["classification_scores", "generation_scores", "rating_scores", "rouge_per_example"]


def rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-example ROUGE-1 and ROUGE-L F-measures (for bootstrap and paired tests)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    r1, rl = [], []
    for p, r in zip(predictions, references, strict=True):
        s = scorer.score(r, p)
        r1.append(s["rouge1"].fmeasure)
        rl.append(s["rougeL"].fmeasure)
    return {"rouge1": r1, "rougeL": rl}


def generation_scores(predictions: Sequence[str | None], references: Sequence[str]) -> dict[str, float]:
    import sacrebleu

    preds = [p or "" for p in predictions]
    per = rouge_per_example(preds, references)
    return {
        "rouge1": float(np.mean(per["rouge1"])) if preds else 0.0,
        "rougeL": float(np.mean(per["rougeL"])) if preds else 0.0,
        "bleu": float(sacrebleu.corpus_bleu(preds, [list(references)]).score) if preds else 0.0,
        "n": len(preds),
    }


def rating_scores(
    predictions: Sequence[str | float | None], golds: Sequence[float], *, low: int = 1, high: int = 5
) -> dict[str, float]:
    """MAE, RMSE and the unparsable rate; unparsable answers count as the farthest label."""
    p, unparsable = [], 0
    for pred, gold in zip(predictions, golds, strict=True):
        if pred is None:
            unparsable += 1
            p.append(farthest_rating(gold, low=low, high=high))
        else:
            p.append(float(pred))
    err = np.asarray(p, dtype=float) - np.asarray(golds, dtype=float)
    n = len(golds)
    return {
        "mae": float(np.mean(np.abs(err))) if n else 0.0,
        "rmse": float(np.sqrt(np.mean(err**2))) if n else 0.0,
        "unparsable": unparsable / n if n else 0.0,
        "n": n,
    }


def classification_scores(predictions: Sequence[str | None], golds: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    p = [x if x is not None else "<unparsable>" for x in predictions]
    return {
        "accuracy": float(accuracy_score(golds, p)),
        "macro_f1": float(f1_score(golds, p, average="macro", labels=sorted(set(golds)), zero_division=0)),
        "unparsable": sum(x is None for x in predictions) / max(1, len(p)),
        "n": len(p),
    }
