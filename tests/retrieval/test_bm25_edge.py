"""BM25 over histories whose texts have no indexable token.

Real reviews read "A+", "A" or "!!!": after stop words, punctuation and one-letter words are
dropped nothing is left. ``bm25s`` cannot index a corpus made only of such texts (``max() arg is
an empty sequence``, after a 0/0 mean length), and one such user used to end a whole evaluation
run. These tests pin that ranking them returns nothing, that mixed histories rank the others as
usual, and that the empty outcome is cached rather than retried for every query.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pytest

from tailorlm.retrieval import BM25Ranker, HistoryEntry, Retrieved


def _entry(i: int, text: str, *, user: str = "u", title: str | None = None) -> HistoryEntry:
    return HistoryEntry(f"doc:{i}", user, text, "review", title=title)


def _ids(hits: Sequence[Retrieved]) -> list[str]:
    return [h.entry.entry_id for h in hits]


EMPTY_TEXTS = ["A+", "A", "the", "!!!"]  # stop word, one letter, punctuation: no token survives


@pytest.mark.parametrize(
    ("texts", "stopwords"),
    [(EMPTY_TEXTS, "en"), (["A"], "en"), (["the and of", "?!"], "en"), (["A+", "I", "...", ""], None)],
    ids=["four", "one", "stop-words", "no-stop-word-list"],  # without a list only 1-letter words and punctuation vanish
)
def test_all_entries_without_tokens_rank_to_nothing(texts: list[str], stopwords: str | None) -> None:
    entries = [_entry(i, t) for i, t in enumerate(texts)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning from a half-built index either
        assert BM25Ranker(stopwords=stopwords).rank(entries, query="guitar strings", k=3) == []


def test_empty_outcome_is_cached_not_rebuilt_per_query() -> None:
    ranker = BM25Ranker()
    entries = [_entry(i, t) for i, t in enumerate(EMPTY_TEXTS)]
    for query in ("guitar strings", "great tuner", "the", ""):
        assert ranker.rank(entries, query=query, k=5) == []
    assert ranker.builds == 1  # one miss, then served from the cache
    ranker.forget("u")  # the cached empty outcome is dropped like any index
    assert ranker.rank(entries, query="guitar", k=5) == []
    assert ranker.builds == 2


def test_an_edit_that_adds_a_word_is_not_hidden_by_the_cached_empty_outcome() -> None:
    ranker = BM25Ranker()
    entries = [_entry(1, "A+"), _entry(2, "!!!")]
    assert ranker.rank(entries, query="guitar", k=2) == []
    edited = [_entry(1, "A+ guitar"), entries[1]]
    hits = ranker.rank(edited, query="guitar", k=2)
    assert _ids(hits) == ["doc:1"] and hits[0].score > 0
    assert ranker.builds == 2


def test_partially_empty_history_ranks_the_others() -> None:
    entries = [
        _entry(1, "A+"),
        _entry(2, "great guitar strings, bright tone"),
        _entry(3, "!!!"),
        _entry(4, "cheap strings broke in a week"),
        _entry(5, "the"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hits = BM25Ranker().rank(entries, query="guitar strings", k=5)
    assert _ids(hits) == ["doc:2", "doc:4"]  # both match; the token-less entries score 0 and are left out
    assert hits[0].score > hits[1].score > 0


def test_token_less_text_with_a_title_is_indexed_by_its_title() -> None:
    entries = [_entry(1, "A+", title="Snark guitar tuner"), _entry(2, "A")]
    assert _ids(BM25Ranker().rank(entries, query="tuner", k=2)) == ["doc:1"]


def test_query_without_tokens_over_a_token_less_history() -> None:
    entries = [_entry(i, t) for i, t in enumerate(EMPTY_TEXTS)]
    assert BM25Ranker().rank(entries, query="!!!", k=2) == []
