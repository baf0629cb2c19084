"""Robust answer parsing and the task templates."""

from __future__ import annotations

import pytest

from tailorlm.tasks import TASKS, farthest_rating, get_task, parse_label, parse_ranking, parse_rating


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", 4),
        (" 5.", 5),
        ("Rating: 4/5", 4),
        ("I'd say 3 out of 5", 3),
        ("four stars", 4),
        ("★★", 2),
        ("10/10", 5),
        ("0/10", 1),
        ("The answer is 2 because", 2),
        ("great product", None),
        ("9", None),
        ("", None),
    ],
    ids=["digit", "digit-dot", "fraction", "out-of", "word", "stars", "ten-scale", "zero-of-ten", "in-prose",
         "no-number", "out-of-range", "empty"],
)  # fmt: skip
def test_parse_rating(text: str, expected: int | None) -> None:
    assert parse_rating(text) == expected


@pytest.mark.parametrize(("gold", "expected"), [(5, 1), (1, 5), (4, 1), (2, 5), (3, 1)])
def test_farthest_rating_is_the_lamp_convention(gold: float, expected: int) -> None:
    assert farthest_rating(gold) == expected


def test_parse_label_prefers_exact_then_earliest_mention() -> None:
    labels = ["comedy", "drama", "romantic comedy"]
    assert parse_label("Drama", labels) == "drama"
    assert parse_label("It is a romantic comedy, not a drama", labels) == "romantic comedy"
    assert parse_label("horror", labels) is None


def test_parse_ranking_is_always_a_permutation() -> None:
    cands = ["Alien", "Jaws", "Heat"]
    assert parse_ranking("[3] then [1]", cands) == ["Heat", "Alien", "Jaws"]
    assert parse_ranking("I pick Jaws", cands) == ["Jaws", "Alien", "Heat"]
    assert parse_ranking("nothing useful", cands) == cands


def test_task_requests_and_parsing() -> None:
    rating = get_task("amazon-rating")
    assert "Review: great" in rating.request("great")
    assert rating.parse("I think 4/5") == "4"
    assert rating.parse("no idea") is None
    rec = get_task("recommendation")
    assert "[1] Alien\n[2] Jaws" in rec.request("", ("Alien", "Jaws"))
    assert get_task("amazon-title").parse(' "Great strings" ') == "Great strings"


def test_every_rating_task_has_an_ordered_numeric_scale() -> None:
    for task in TASKS.values():
        if task.kind == "rating":
            assert [int(x) for x in task.labels] == sorted(int(x) for x in task.labels)


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="amazon-rating"):
        get_task("amazon-ratings")
