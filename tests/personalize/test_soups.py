"""Personalized Soups without a model: config validation and the per-user mixing weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.data import Preference, Store, User
from tailorlm.personalize.soups import SoupsConfig, user_weights
from tailorlm.personalize.training.pairs import SOURCE_DIMENSION

DIMS = ("concise", "detailed")


def _pref(uid: str, dimension: str, timestamp: int | None, source: str = "workbench") -> Preference:
    # the prompt carries every field so no two test preferences share a content id
    return Preference(
        user_id=uid,
        prompt=f"{uid} {dimension} {timestamp} {source}",
        chosen="a",
        rejected="b",
        dimension=dimension,
        source=source,
        timestamp=timestamp,
    )


def _store(tmp_path: Path, *records) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    s.add([User(user_id="u"), *records])
    return s


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dimensions": ("concise",)}, "dimensions"),
        ({"dimensions": ("concise", "concise")}, "dimensions"),
        ({"dimensions": ("concise", " ")}, "dimensions"),
        ({"combination": "sum"}, "combination"),
        ({"if_missing": "warn"}, "if_missing"),
        ({"cache_capacity": 0}, "cache_capacity"),
    ],
    ids=[
        "one-dimension",
        "repeated-dimension",
        "blank-dimension",
        "unknown-combination",
        "unknown-if-missing",
        "zero-cache",
    ],
)
def test_soups_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"SoupsConfig\.{field} must"):
        SoupsConfig(**kwargs)


def test_feedback_favouring_a_dimension_gives_it_the_larger_weight(tmp_path: Path) -> None:
    store = _store(tmp_path, *[_pref("u", "detailed", t) for t in (10, 20, 30)], _pref("u", "concise", 40))
    weights, source = user_weights(store, "u", DIMS)
    assert source == "feedback"
    assert weights["detailed"] > weights["concise"] > 0
    assert sum(weights.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("user", "records"),
    [
        ("u", []),
        ("stranger", []),
        ("u", [_pref("u", "concise", 10, source=SOURCE_DIMENSION), _pref("u", "formal", 10)]),
    ],
    ids=["no-preferences", "unknown-user", "only-derived-twins-and-unknown-dimensions"],
)
def test_no_feedback_means_uniform_weights(tmp_path: Path, user: str, records: list[Preference]) -> None:
    weights, source = user_weights(_store(tmp_path, *records), user, DIMS)
    assert (weights, source) == ({"concise": 0.5, "detailed": 0.5}, "uniform")


def test_feedback_at_or_after_the_query_time_is_not_used(tmp_path: Path) -> None:
    store = _store(tmp_path, _pref("u", "concise", 10), _pref("u", "detailed", 100), _pref("u", "detailed", 200))
    assert user_weights(store, "u", DIMS, before=100) == ({"concise": 1.0, "detailed": 0.0}, "feedback")
    assert user_weights(store, "u", DIMS, before=10) == ({"concise": 0.5, "detailed": 0.5}, "uniform")
    everything, _ = user_weights(store, "u", DIMS)
    assert everything == pytest.approx({"concise": 1 / 3, "detailed": 2 / 3})


def test_hand_worked_weights(tmp_path: Path) -> None:
    """Query at t=40, dimensions (concise, detailed). The user's stored preferences:

    - workbench "detailed" at t=10 and t=20, workbench "concise" at t=30: counted;
    - derived twins (one "concise", one "detailed", t=5): every review yields both, so skipped;
    - workbench "formal" at t=15: not one of the dimensions, skipped;
    - workbench "concise" at t=40 and "detailed" at t=50: not strictly before t=40, skipped;
    - workbench "concise" with no timestamp: cannot be placed before the query, skipped.

    Counts: concise 1, detailed 2, total 3, so weights concise 1/3, detailed 2/3, from feedback.
    """
    store = _store(
        tmp_path,
        _pref("u", "detailed", 10),
        _pref("u", "detailed", 20),
        _pref("u", "concise", 30),
        _pref("u", "concise", 5, source=SOURCE_DIMENSION),
        _pref("u", "detailed", 5, source=SOURCE_DIMENSION),
        _pref("u", "formal", 15),
        _pref("u", "concise", 40),
        _pref("u", "detailed", 50),
        _pref("u", "concise", None),
    )
    weights, source = user_weights(store, "u", DIMS, before=40)
    assert source == "feedback"
    assert weights == pytest.approx({"concise": 1 / 3, "detailed": 2 / 3})
