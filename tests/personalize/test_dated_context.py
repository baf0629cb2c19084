"""Context lines carry their date: "[2023-05-08] Caroline: ..." (issue 16: retrieved context had no
dates, so "when did ..." questions could not be answered from it although the timestamp is stored).

Tasks whose prompt format is a published protocol (LaMP) or whose timestamps only order
entries (Persona-Chat's turn numbers) opt out with ``Task.dated_history=False``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.data import Document, Interaction, Item, Store, TaskExample
from tailorlm.personalize import ContextItem, ProfileConfig, ProfilePersonalizer, Query, parse_method_spec
from tailorlm.personalize.render import item_date, item_text
from tailorlm.testing import FakeGenerator

MAY_8 = 1683554160  # 2023-05-08 13:56 UTC
LATE = 1687910399  # 2023-06-27 23:59:59 UTC: still the 27th in UTC


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    s.add(
        [
            Document(user_id="u", doc_id="D1:3", doc_kind="message", timestamp=MAY_8,
                     text="Caroline: I went to a support group yesterday."),
            Document(user_id="u", doc_id="D2:1", doc_kind="message", timestamp=LATE,
                     text="Caroline: I gave a talk at a school."),
            Document(user_id="lamp", doc_id="p1", doc_kind="review", text="great strings", rating=5,
                     timestamp=MAY_8),
            Document(user_id="chat", doc_id="turn:1", doc_kind="message", text="I love hiking.", timestamp=1),
            Item(item_id="m1", title="Toy Story (1995)"),
            Interaction(user_id="ml", item_id="m1", interaction="rating", value=5, timestamp=881250949),
        ]
    )  # fmt: skip
    yield s
    s.close()


def _lines(store: Store, method: str, user: str, query: Query) -> list[str]:
    out = parse_method_spec(method).fit(store).personalize(user, query)
    return [line for line in out.context.splitlines() if line[:1].isdigit()]


def test_retrieved_lines_show_the_stored_date(store: Store) -> None:
    lines = _lines(store, "rag-bm25", "u", Query("When did Caroline go to the support group?", task="locomo-qa"))
    assert lines[0] == "1. [2023-05-08] Caroline: I went to a support group yesterday."


@pytest.mark.parametrize("method", ["rag-bm25", "recency", "random"])
def test_every_retriever_dates_its_lines(store: Store, method: str) -> None:
    lines = _lines(store, method, "u", Query("Caroline support group talk school", task="chat"))
    assert sorted(lines, key=lambda x: x[3:]) and all(line[3:].startswith("[2023-0") for line in lines)
    assert any("[2023-06-27] Caroline: I gave a talk" in line for line in lines)  # UTC date, not local


def test_interactions_are_dated_too(store: Store) -> None:
    lines = _lines(store, "recency", "ml", Query("Toy Story", task="movielens-rating"))
    assert lines == ["1. [1997-12-04] Toy Story (1995) -> 5"]


def test_lamp_keeps_its_published_undated_format(store: Store) -> None:
    ex = TaskExample(task="lamp-3", example_id="q", user_id="lamp", input="What is the score of this review: great",
                     target="5", metadata={"profile_ids": ["p1"]})  # fmt: skip
    lines = _lines(store, "rag-bm25", "lamp", Query.from_example(ex))
    assert lines == ['1. 5 is the score for "great strings"']


def test_turn_numbers_are_not_dates(store: Store) -> None:
    """Persona-Chat stores turn numbers as timestamps: no "[1970-01-01]" on any task."""
    for task in ("personachat-response", "chat"):
        assert _lines(store, "recency", "chat", Query("hi", task=task)) == ["1. I love hiking."]


def test_profile_summaries_read_dated_entries(store: Store) -> None:
    fake = FakeGenerator()
    profile = ProfilePersonalizer(ProfileConfig(summary=True, attributes=False), generator=fake).fit(store)
    profile.personalize("u", Query("hello", task="chat"))
    prompt = fake.calls[0].batch[0][-1]["content"]
    assert "- [2023-05-08] Caroline: I went to a support group yesterday." in prompt


@pytest.mark.parametrize(
    ("timestamp", "date"),
    [(MAY_8, "2023-05-08"), (LATE, "2023-06-27"), (-86400, "1969-12-31"), (None, None), (0, None), (17, None),
     (2**62, None)],
    ids=["may-8", "late-utc", "before-1970", "none", "zero", "ordinal", "beyond-a-date"],
)  # fmt: skip
def test_item_date(timestamp: int | None, date: str | None) -> None:
    assert item_date(timestamp) == date
    text = item_text(ContextItem("x", label="5", timestamp=timestamp))
    assert text == (f"[{date}] x -> 5" if date else "x -> 5")
