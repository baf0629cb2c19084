"""The prior-shifted choice decision (``choice-prior``): a class-balanced adapter's label
distribution times the population's label prior, ratings decided by the median."""

from __future__ import annotations

import numpy as np
import pytest

from tailorlm.models.inputs import ModelInput
from tailorlm.tasks import get_task
from tailorlm.tasks.predict import ChoicePredictor, decide_distribution


class FixedScorer:
    """Gives every input the same log-probabilities over the labels: what a balanced adapter
    that cannot tell 4 from 5 on this input would say."""

    def __init__(self, logp: dict[str, float]) -> None:
        self.logp = logp

    def score_choices(self, batch, choices, *, adapter=None):  # type: ignore[no-untyped-def]
        return np.asarray([[self.logp[c] for c in choices] for _ in batch])


def _inputs(n: int) -> list[ModelInput]:
    return [ModelInput(messages=[{"role": "user", "content": f"review {i}: fine strings"}]) for i in range(n)]


LABELS = ("1", "2", "3", "4", "5")
# flat over 3-5 (balanced training spreads mass evenly), a little on 1-2
FLAT = {"1": np.log(0.1), "2": np.log(0.1), "3": np.log(0.25), "4": np.log(0.275), "5": np.log(0.275)}


def test_prior_shift_moves_a_flat_distribution_toward_the_frequent_label() -> None:
    task = get_task("amazon-rating")
    population = ["5"] * 70 + ["4"] * 20 + ["3"] * 6 + ["2"] * 2 + ["1"] * 2
    plain = ChoicePredictor(FixedScorer(FLAT), calibrate=False).predict(task, _inputs(2), [LABELS] * 2)
    shifted = ChoicePredictor(FixedScorer(FLAT), calibrate=False, prior_shift=True).fit(population)
    preds = shifted.predict(task, _inputs(2), [LABELS] * 2)
    assert [p.answer for p in plain] == ["4", "4"]  # argmax of the unshifted distribution (the first max)
    assert [p.answer for p in preds] == ["5", "5"]  # the prior makes 5 the median
    probs = np.asarray(preds[0].extra["probs"])
    assert probs.sum() == pytest.approx(1.0, abs=1e-3) and probs[4] > 0.6
    assert 4.0 < preds[0].extra["expected"] < 5.0  # kept for RMSE readers
    assert shifted.name == "choice-prior"


def test_prior_shift_with_a_uniform_population_changes_nothing() -> None:
    task = get_task("amazon-rating")
    predictor = ChoicePredictor(FixedScorer(FLAT), calibrate=False, prior_shift=True).fit(list(LABELS) * 10)
    probs = predictor.predict(task, _inputs(1), [LABELS])[0].extra["probs"]
    expected = np.exp([FLAT[c] for c in LABELS])
    assert probs == pytest.approx((expected / expected.sum()).round(4).tolist(), abs=1e-4)


def test_prior_shift_needs_the_population_first() -> None:
    task = get_task("amazon-rating")
    with pytest.raises(RuntimeError, match="fit"):
        ChoicePredictor(FixedScorer(FLAT), calibrate=False, prior_shift=True).predict(task, _inputs(1), [LABELS])
    with pytest.raises(ValueError, match="population"):
        ChoicePredictor(FixedScorer(FLAT), prior_shift=True).fit([])


def test_decide_distribution_median_for_ratings_argmax_among_choices_for_labels() -> None:
    rating = get_task("amazon-rating")
    # 0.45 on 1, 0.55 on 5: the median is 5, the expectation 3.2
    pred = decide_distribution(rating, ["1", "5"], np.asarray([0.45, 0.55]), ())
    assert pred.answer == "5" and pred.extra["expected"] == pytest.approx(3.2)
    pred = decide_distribution(rating, ["5", "1", "3"], np.asarray([0.3, 0.3, 0.4]), ())
    assert pred.answer == "3"  # classes need not be sorted
    tagging = get_task("lamp-2")
    pred = decide_distribution(tagging, ["comedy", "drama"], np.asarray([0.9, 0.1]), ("drama",))
    assert pred.answer == "drama"  # the likeliest *allowed* label
    assert decide_distribution(tagging, ["comedy"], np.asarray([1.0]), ("drama",)).extra["unseen_labels"]
