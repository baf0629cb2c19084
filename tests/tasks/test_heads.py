"""User-level heads and input heuristics: what each one learns, on inputs small enough to check by hand."""

from __future__ import annotations

import pytest

from tailorlm.tasks import get_task
from tailorlm.tasks.heads import (
    INF,
    GlobalScorer,
    ItemMeanHead,
    Observation,
    UserMajorityHead,
    UserOffsetHead,
    UserPriorHead,
)
from tailorlm.tasks.heuristics import CopyInputPredictor, FirstWordsPredictor

RATING = get_task("amazon-rating")
WORDS = ["great tone", "awful hum", "fine stand", "bright strings", "dull pick", "solid case"]


def _population() -> list[Observation]:
    """Six raters of six items: item i's crowd label is 1 + i % 5, rater u3 always says 5."""
    out = []
    for u in range(6):
        for i in range(6):
            value = "5" if u == 3 else str(1 + i % 5)
            out.append(Observation(f"the {WORDS[i]} here", value, f"u{u}", f"item{i}"))
    return out


def test_the_crowd_never_counts_the_users_own_labels() -> None:
    scorer = GlobalScorer().fit(RATING, _population())
    total, n = scorer.crowd("item0", exclude_user="u3")
    assert (total, n) == (5.0, 5)  # five raters who said 1, without u3's 5
    assert scorer.crowd("item0", exclude_user=None) == (10.0, 6)
    assert scorer.crowd("unknown", exclude_user=None) == (0.0, 0)
    # m=0: the crowd mean; m=inf: the text model's expectation, whatever the crowd says
    q = Observation("the great tone here", None, "new", "item0")
    assert scorer.scores(RATING, [q], 0.0)[0] == pytest.approx(10 / 6)
    assert scorer.scores(RATING, [q], INF)[0] == pytest.approx(scorer.expectations(RATING, [q.text])[0])


def test_user_offset_adds_the_users_shrunk_residual_and_inf_is_the_global_score() -> None:
    head = UserOffsetHead().fit(RATING, _population())
    q = Observation("the great tone here", None, "harsh", "item0")  # crowd: about 1
    # the new user rated items 1 and 2 two stars above the crowd
    hist = [
        Observation("the awful hum here", "4", "harsh", "item1"),
        Observation("the fine stand here", "5", "harsh", "item2"),
    ]
    kw = {"m": 0.0, "decision": "raw"}
    base = float(head.predict(RATING, [q], [[]], [()], alpha=1.0, **kw)[0].answer)
    shifted = head.predict(RATING, [q], [hist], [()], alpha=0.0, **kw)[0]
    shrunk = head.predict(RATING, [q], [hist], [()], alpha=2.0, **kw)[0]
    off = head.predict(RATING, [q], [hist], [()], alpha=INF, **kw)[0]
    assert shifted.extra["offset"] > 1.0 and 0 < shrunk.extra["offset"] < shifted.extra["offset"]
    assert float(off.answer) == pytest.approx(base) and off.extra["offset"] == 0.0
    assert float(shifted.answer) > base
    item_mean = ItemMeanHead().fit(RATING, _population())
    assert float(item_mean.predict(RATING, [q], [hist], [()], **kw)[0].answer) == pytest.approx(base)


def test_user_prior_shifts_an_uncertain_text_model_toward_the_users_labels() -> None:
    task = get_task("lamp-2")
    pop = [
        Observation(f"a film about {w}", lab, f"p{i}", None)
        for i, (w, lab) in enumerate(
            [("love", "romance"), ("kisses", "romance"), ("guns", "action"), ("cars", "action")] * 3
        )
    ]
    head = UserPriorHead().fit(task, pop)
    q = Observation("a film about nothing", None, "fan", None)  # no known word: the text model is unsure
    fan = [Observation("x", "action", "fan"), Observation("y", "action", "fan"), Observation("z", "action", "fan")]
    lover = [Observation("x", "romance", "fan")] * 3
    choices = [("romance", "action")]
    assert head.predict(task, [q], [fan], choices, alpha=1.0)[0].answer == "action"
    assert head.predict(task, [q], [lover], choices, alpha=1.0)[0].answer == "romance"
    plain = head.predict(task, [q], [[]], choices, alpha=1.0)[0].answer
    assert head.predict(task, [q], [fan], choices, alpha=INF)[0].answer == plain


def test_user_majority_is_the_users_most_frequent_allowed_label() -> None:
    head = UserMajorityHead().fit(RATING, _population())
    hist = [Observation("a", "2", "u"), Observation("b", "2", "u"), Observation("c", "4", "u")]
    assert [p.answer for p in head.predict(RATING, [Observation("q", None)] * 2, [hist, []], [(), ()])] == [
        "2",
        head.scorer_.majority_,
    ]
    assert head.predict(RATING, [Observation("q", None)], [hist], [("4", "5")])[0].answer == "4"


def test_heads_refuse_tasks_they_do_not_apply_to() -> None:
    with pytest.raises(ValueError, match="rating"):
        UserOffsetHead().fit(get_task("amazon-title"), _population())


def test_input_heuristics_copy_the_content_and_take_as_many_words_as_the_population_answers() -> None:
    task = get_task("lamp-4")
    text = "Generate a headline for the following article: Storm closes schools across the county today"
    assert CopyInputPredictor().predict(task, [text])[0].answer == "Storm closes schools across the county today"
    first = FirstWordsPredictor().fit(["a b c", "a b c d", "a b", ""])
    assert first.n_words_ == 3
    assert first.predict(task, [text])[0].answer == "Storm closes schools"
    with pytest.raises(ValueError, match="non-empty"):
        FirstWordsPredictor().fit(["", " "])


def test_the_text_model_fits_repeated_examples_as_weighted_rows_with_the_same_result() -> None:
    from sklearn.linear_model import LogisticRegression

    from tailorlm.tasks.text_model import GlobalTextPredictor

    texts = ["great tone", "great tone", "great tone", "awful hum", "fine stand", "awful hum", "great tone"]
    labels = ["5", "5", "4", "1", "3", "1", "5"]
    model = GlobalTextPredictor().fit(RATING, texts, labels)
    expanded = LogisticRegression(C=1.0, max_iter=2000).fit(model.vectorizer_.transform(texts), labels)
    probe = ["great tone", "awful hum", "fine stand", "unseen words"]
    _, probs = model.distributions(RATING, probe)
    assert probs == pytest.approx(expanded.predict_proba(model.vectorizer_.transform(probe)), abs=1e-4)
