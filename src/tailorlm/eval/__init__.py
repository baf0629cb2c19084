"""Evaluation: deterministic splits, metrics from maintained libraries, and the method runner."""

from tailorlm.eval.metrics import (
    classification_scores,
    generation_scores,
    rating_scores,
    rouge_per_example,
)
from tailorlm.eval.runner import PREDICTORS, RunResult, run_method
from tailorlm.eval.splits import Split, make_split

__all__ = [
    "PREDICTORS",
    "RunResult",
    "Split",
    "classification_scores",
    "generation_scores",
    "make_split",
    "rating_scores",
    "rouge_per_example",
    "run_method",
]
