"""LaMP task definitions: per-question labels, calibration that keeps the instruction, no position bias."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from tailorlm.data import TaskExample
from tailorlm.models.inputs import ModelInput
from tailorlm.personalize.types import Query
from tailorlm.tasks import get_task
from tailorlm.tasks.predict import ChoicePredictor, content_free

LAMP3_INSTRUCTION = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
    "or 5 without further explanation."
)
TAGS = ["sci-fi", "comedy", "romance", "action", "classic", "fantasy"]


def _lamp2_question(description: str, tags: Sequence[str] = TAGS) -> str:
    return (
        "Which tag does this movie relate to among the following tags? Just answer with the tag name "
        f"without further explanation. tags: [{', '.join(tags)}] description: {description}"
    )


def test_content_free_lamp3_keeps_the_instruction() -> None:
    task = get_task("lamp-3")
    question = f"{LAMP3_INSTRUCTION} review: The strings broke on day one. Review: awful."
    free = task.content_free_request(task.request(question))
    assert free == f"{LAMP3_INSTRUCTION} review: N/A"


_LAMP1 = (
    'For an author who has written the paper with the title "{}", which reference is related? '
    'Just answer with [1] or [2] without explanation. [1]: "{}" [2]: "{}"'
)
_H4 = "Generate a headline for the following article: "
_T5 = "Generate a title for the following abstract of a paper: "
_P7 = "Paraphrase the following tweet without any explanation before or after it: "


@pytest.mark.parametrize(
    ("task", "question", "expected"),
    [
        ("lamp-4", _H4 + "Markets fell.", _H4 + "N/A"),
        ("lamp-5", _T5 + "We study X.", _T5 + "N/A"),
        ("lamp-7", _P7 + "so tired today", _P7 + "N/A"),
        ("lamp-1", _LAMP1.format("A", "B", "C"), _LAMP1.format("N/A", "N/A", "N/A")),
    ],
)
def test_content_free_replaces_only_the_variable_part(task: str, question: str, expected: str) -> None:
    assert get_task(task).content_free_request(question) == expected


def test_content_free_of_a_task_with_its_own_template_replaces_the_whole_input() -> None:
    task = get_task("amazon-rating")
    free = content_free([{"role": "user", "content": task.request("great strings")}], task, task.labels)
    assert free[-1]["content"] == task.request("N/A")


def test_lamp2_labels_come_from_the_question() -> None:
    q = _lamp2_question("a robot falls in love")
    assert get_task("lamp-2").choices_in(q) == tuple(TAGS)
    ex = TaskExample(task="lamp-2", example_id="1", user_id="u", input=q, target="romance")
    assert Query.from_example(ex).choices == tuple(TAGS)
    news = (
        "Which category does this article relate to among the following categories? "
        "categories: [women, sports] article: x"
    )
    assert get_task("lamp-2").choices_in(news) == ("women", "sports")
    assert get_task("lamp-2").parse("The tag is: romance", tuple(TAGS)) == "romance"


def test_reorder_rewrites_the_listed_labels_only() -> None:
    task = get_task("lamp-2")
    q = _lamp2_question("comedy of errors")
    order = [*TAGS[2:], *TAGS[:2]]
    out = task.reorder_choices(q, TAGS, order)
    assert out is not None and task.choices_in(out) == tuple(order)
    assert out.endswith("description: comedy of errors")
    assert get_task("lamp-3").reorder_choices("no list here", ("1", "2"), ("2", "1")) is None


class PositionBiasedScorer:
    """Scores like a small model with a strong first-position bias: +3 for the first listed
    label, +1 for the label the description mentions (the right answer)."""

    def __init__(self) -> None:
        self.rows = 0

    def score_choices(self, batch, choices, *, adapter=None):
        task = get_task("lamp-2")
        out = []
        for messages in batch:
            self.rows += 1
            request = messages[-1]["content"]
            listed = task.choices_in(request)
            content = request.rsplit("description:", 1)[-1]
            out.append([3.0 * (c == listed[0]) + 1.0 * (c in content) for c in choices])
        return np.asarray(out)


def _predict(predictor: ChoicePredictor, descriptions: Sequence[str]) -> list[str | None]:
    task = get_task("lamp-2")
    inputs = [ModelInput(messages=[{"role": "user", "content": _lamp2_question(d)}]) for d in descriptions]
    return [p.answer for p in predictor.predict(task, inputs, [TAGS] * len(inputs))]  # type: ignore[misc]


# The right tag is never the first listed one.
DESCRIPTIONS = [
    "a romance in Paris",
    "an action film with cars",
    "a fantasy quest",
    "a comedy club",
    "a classic western",
]
RIGHT = ["romance", "action", "fantasy", "comedy", "classic"]


def test_uncalibrated_single_order_choice_shows_the_position_bias() -> None:
    answers = _predict(ChoicePredictor(PositionBiasedScorer(), calibrate=False), DESCRIPTIONS)
    assert answers == ["sci-fi"] * len(DESCRIPTIONS)  # what the issue saw: the first listed tag every time


def test_calibration_with_the_instruction_kept_removes_the_position_bias() -> None:
    assert _predict(ChoicePredictor(PositionBiasedScorer(), calibrate=True), DESCRIPTIONS) == RIGHT


def test_permuted_label_orders_remove_the_position_bias() -> None:
    scorer = PositionBiasedScorer()
    # every cyclic order: each label is listed first exactly once, so the bias is the same for all
    answers = _predict(ChoicePredictor(scorer, calibrate=False, permutations=len(TAGS)), DESCRIPTIONS)
    assert answers == RIGHT
    assert scorer.rows == len(TAGS) * len(DESCRIPTIONS)
    with pytest.raises(ValueError, match="permutations"):
        ChoicePredictor(scorer, permutations=0)


def test_retrieval_matches_the_content_not_the_instruction() -> None:
    task = get_task("lamp-3")
    assert task.content_of(f"{LAMP3_INSTRUCTION} review: warm strings") == "warm strings"
    assert get_task("amazon-rating").content_of("warm strings") == "warm strings"
    assert get_task("lamp-1").content_of(_LAMP1.format("A", "B", "C")) == "A B C"
