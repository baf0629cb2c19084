"""Rankers without a model: RRF arithmetic, recency, seeded random, BM25, build_ranker, and the
dense ranker's vector cache (with a tiny deterministic bag-of-words embedder over a real SQLite store)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tailorlm.data import Document, Store
from tailorlm.retrieval import (
    BM25Ranker,
    DenseRanker,
    HistoryEntry,
    HybridRanker,
    RandomRanker,
    Ranker,
    RecencyRanker,
    Retrieved,
    build_ranker,
    load_history,
)


def _entry(i: int | str, text: str = "", *, ts: int | None = None, user: str = "u") -> HistoryEntry:
    return HistoryEntry(f"doc:{i}", user, text or f"entry {i}", "review", ts)


def _ids(hits: Sequence[Retrieved]) -> list[str]:
    return [h.entry.entry_id for h in hits]


# -- hybrid: reciprocal rank fusion -------------------------------------------------------


class FixedRanker:
    """Ranks a fixed list of entry ids (those present in ``entries``), whatever the query."""

    def __init__(self, name: str, order: Sequence[str]) -> None:
        self.name = name
        self.order = list(order)
        self.asked_k: list[int] = []

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        self.asked_k.append(k)
        by_id = {e.entry_id: e for e in entries}
        return [Retrieved(by_id[i], 1.0) for i in self.order if i in by_id][:k]


def test_rrf_hand_worked_example() -> None:
    """Two rankers, c = 60, ranks counted from 1:

    A ranks a, b, c and B ranks b, c, d. Each entry gets the sum of 1 / (60 + rank) over the
    rankers that returned it:

    - b: 1/(60+2) from A + 1/(60+1) from B = 1/62 + 1/61 = 0.032522...
    - c: 1/(60+3) from A + 1/(60+2) from B = 1/63 + 1/62 = 0.032002...
    - a: 1/(60+1) from A only                = 1/61        = 0.016393...
    - d: 1/(60+3) from B only                = 1/63        = 0.015873...

    so the fused order is b, c, a, d: agreement between rankers beats one first place.
    With k = 2 only b and c are returned. Each ranker is asked for max(k, depth) entries.
    """
    entries = [_entry(x) for x in "abcde"]  # e is returned by neither ranker
    a = FixedRanker("A", ["doc:a", "doc:b", "doc:c"])
    b = FixedRanker("B", ["doc:b", "doc:c", "doc:d"])
    hits = HybridRanker([a, b]).rank(entries, query="anything", k=10)
    assert _ids(hits) == ["doc:b", "doc:c", "doc:a", "doc:d"]
    expected = [1 / 62 + 1 / 61, 1 / 63 + 1 / 62, 1 / 61, 1 / 63]
    assert [h.score for h in hits] == pytest.approx(expected, rel=1e-12)
    assert a.asked_k == [50] and b.asked_k == [50]  # depth 50 > k

    top2 = HybridRanker([a, b]).rank(entries, query="anything", k=2)
    assert _ids(top2) == ["doc:b", "doc:c"]
    assert all(isinstance(h.entry, HistoryEntry) and h.entry in entries for h in top2)


def test_rrf_constant_and_depth_are_honoured() -> None:
    """With c = 0 the first place is worth 1/1 = 1.0, the second 1/2; depth 1 keeps one entry per ranker."""
    entries = [_entry(x) for x in "abc"]
    a, b = FixedRanker("A", ["doc:a", "doc:b"]), FixedRanker("B", ["doc:c", "doc:a"])
    hits = HybridRanker([a, b], c=0, depth=1).rank(entries, query="q", k=1)
    assert a.asked_k == [1]
    assert len(hits) == 1 and hits[0].score == 1.0  # a and c tie at 1/1; first seen wins
    full = HybridRanker([a, b], c=0, depth=5).rank(entries, query="q", k=3)
    assert _ids(full) == ["doc:a", "doc:c", "doc:b"]
    assert [h.score for h in full] == pytest.approx([1 + 1 / 2, 1.0, 1 / 2])


def test_hybrid_needs_a_ranker() -> None:
    with pytest.raises(ValueError, match="at least one ranker"):
        HybridRanker([])


# -- recency and random -------------------------------------------------------------------


def test_recency_newest_first_and_undated_last_in_input_order() -> None:
    entries = [
        _entry("old", ts=5),
        _entry("undated1"),
        _entry("new", ts=10),
        _entry("oldest", ts=1),
        _entry("undated2"),
        _entry("new-too", ts=10),  # a tie keeps input order
    ]
    hits = RecencyRanker().rank(entries, query="ignored", k=10)
    assert _ids(hits) == ["doc:new", "doc:new-too", "doc:old", "doc:oldest", "doc:undated1", "doc:undated2"]
    assert [h.score for h in hits] == pytest.approx([1 / (1 + p) for p in range(6)])
    assert _ids(RecencyRanker().rank(entries, query="other", k=2)) == ["doc:new", "doc:new-too"]
    assert RecencyRanker().rank([], query="q", k=3) == []


def test_random_is_seeded_by_seed_and_query() -> None:
    entries = [_entry(i) for i in range(30)]
    first = _ids(RandomRanker(seed=1).rank(entries, query="q", k=5))
    assert first == _ids(RandomRanker(seed=1).rank(entries, query="q", k=5))  # a fresh instance, same draw
    assert first != _ids(RandomRanker(seed=2).rank(entries, query="q", k=5))
    assert first != _ids(RandomRanker(seed=1).rank(entries, query="another query", k=5))


@pytest.mark.parametrize(("n", "k"), [(0, 3), (3, 3), (3, 10), (30, 7)], ids=["empty", "k=n", "k>n", "k<n"])
def test_random_returns_at_most_k_distinct_entries(n: int, k: int) -> None:
    entries = [_entry(i) for i in range(n)]
    for seed in range(5):
        ids = _ids(RandomRanker(seed=seed).rank(entries, query="q", k=k))
        assert len(ids) == min(n, k) and len(set(ids)) == len(ids)
        assert set(ids) <= {e.entry_id for e in entries}


# -- BM25 ---------------------------------------------------------------------------------

REVIEWS = [
    _entry(1, "These guitar strings sound bright and stay in tune"),
    _entry(2, "A sturdy keyboard stand that does not wobble"),
    _entry(3, "The drum sticks broke after one week of practice"),
    _entry(4, "Great tuner clip, easy to read on stage"),
]


def test_bm25_ranks_the_lexical_match_first() -> None:
    hits = BM25Ranker().rank(REVIEWS, query="which drum sticks last?", k=2)
    assert _ids(hits) == ["doc:3"]  # entries sharing no query term score 0 and are not returned
    assert hits[0].score > 0
    two = BM25Ranker().rank(REVIEWS, query="guitar tuner", k=4)
    assert set(_ids(two)) == {"doc:1", "doc:4"}
    assert [h.score for h in two] == sorted((h.score for h in two), reverse=True)


@pytest.mark.parametrize(
    "query",
    ["the and of it", "xylophone zeppelin", "", "!!! ???"],
    ids=["stop-words-only", "unknown-words", "empty", "punctuation-only"],
)
def test_bm25_returns_nothing_without_a_matching_term(query: str) -> None:
    assert BM25Ranker().rank(REVIEWS, query=query, k=3) == []


def test_bm25_k_larger_than_entries_and_empty_history() -> None:
    hits = BM25Ranker().rank(REVIEWS, query="guitar strings keyboard drum tuner", k=100)
    assert sorted(_ids(hits)) == ["doc:1", "doc:2", "doc:3", "doc:4"]
    one = BM25Ranker().rank(REVIEWS[:1], query="guitar", k=5)  # a one-entry index still scores > 0
    assert _ids(one) == ["doc:1"] and one[0].score > 0
    assert BM25Ranker().rank([], query="guitar", k=5) == []


def test_bm25_matches_the_title_too() -> None:
    e = HistoryEntry("doc:t", "u", "works as described", "review", title="Fender guitar cable")
    assert _ids(BM25Ranker().rank([e, *REVIEWS[1:]], query="cable", k=2)) == ["doc:t"]


def test_bm25_index_cache_reuses_and_never_serves_a_stale_index() -> None:
    ranker = BM25Ranker()
    entries = [_entry(1, "bright guitar strings"), _entry(2, "a sturdy keyboard stand")]
    assert _ids(ranker.rank(entries, query="keyboard", k=1)) == ["doc:2"]
    assert _ids(ranker.rank(entries, query="guitar", k=1)) == ["doc:1"]
    assert ranker.builds == 1  # same candidates: one index
    edited = [entries[0], _entry(2, "a padded drum throne")]  # same ids, new text
    assert ranker.rank(edited, query="keyboard", k=1) == []
    assert ranker.builds == 2
    other = [_entry(1, "bright guitar strings", user="v"), _entry(2, "a sturdy keyboard stand", user="v")]
    ranker.rank(other, query="keyboard", k=1)
    assert ranker.builds == 3  # same ids and texts of another user: its own index
    ranker.forget("u")
    ranker.rank(entries, query="keyboard", k=1)
    ranker.rank(other, query="keyboard", k=1)
    assert ranker.builds == 4  # u's indexes were dropped, v's kept


def test_bm25_cache_keeps_one_version_of_a_growing_history() -> None:
    ranker = BM25Ranker()
    history = [_entry(1, "bright guitar strings")]
    for i in range(2, 12):  # a user adding a document before each question
        history = [*history, _entry(i, f"review number {i} of a keyboard stand")]
        assert _ids(ranker.rank(history, query="guitar", k=1)) == ["doc:1"]
    assert ranker.builds == 10 and len(ranker._indexes) == 1  # not ten stale versions
    ranker.rank([_entry(1, "bright guitar strings", user="v")], query="guitar", k=1)
    assert len(ranker._indexes) == 2  # another user's history is kept beside it


def test_bm25_cache_holds_at_most_its_entry_budget() -> None:
    ranker = BM25Ranker(cache_entries=10)
    users = {u: [_entry(i, f"guitar review {i} by {u}", user=u) for i in range(4)] for u in "abc"}
    for u in "abc":  # 4 + 4 + 4 entries: the oldest index goes
        assert _ids(ranker.rank(users[u], query="guitar", k=1))
    assert sum(n for n, _, _ in ranker._indexes.values()) <= 10 and len(ranker._indexes) == 2
    assert ranker.builds == 3
    ranker.rank(users["c"], query="guitar", k=1)
    assert ranker.builds == 3  # the newest is still cached
    long = [_entry(i, f"a long history entry {i}", user="d") for i in range(11)]
    assert _ids(ranker.rank(long, query="entry", k=1))  # larger than the budget: answered, not kept
    ranker.rank(long, query="entry", k=1)
    assert ranker.builds == 5 and len(ranker._indexes) == 2


# -- build_ranker and k validation --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("bm42", {}, "unknown retriever 'bm42'"),
        ("BM25", {}, "unknown retriever"),
        ("dense", {}, "'dense' retriever needs an embedder"),
        ("hybrid", {}, "'hybrid' retriever needs an embedder"),
    ],
    ids=["unknown-name", "wrong-case", "dense-without-embedder", "hybrid-without-embedder"],
)
def test_build_ranker_errors(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_ranker(name, **kwargs)


def test_build_ranker_names() -> None:
    emb = BowEmbedder()
    for name, cls in [("bm25", BM25Ranker), ("recency", RecencyRanker), ("random", RandomRanker)]:
        r = build_ranker(name, seed=3)
        assert isinstance(r, cls) and isinstance(r, Ranker) and r.name == name
    assert build_ranker("random", seed=3).seed == 3  # type: ignore[attr-defined]
    dense = build_ranker("dense", embedder=emb)
    assert isinstance(dense, DenseRanker) and dense.embedder is emb
    hybrid = build_ranker("hybrid", embedder=emb)
    assert isinstance(hybrid, HybridRanker)
    assert [type(r) for r in hybrid.rankers] == [BM25Ranker, DenseRanker]


RANKERS = {
    "bm25": lambda: BM25Ranker(),
    "dense": lambda: DenseRanker(BowEmbedder()),
    "hybrid": lambda: HybridRanker([BM25Ranker(), DenseRanker(BowEmbedder())]),
    "recency": lambda: RecencyRanker(),
    "random": lambda: RandomRanker(),
}


@pytest.mark.parametrize("k", [0, -1], ids=["zero", "negative"])
@pytest.mark.parametrize("name", sorted(RANKERS))
@pytest.mark.parametrize("empty", [False, True], ids=["entries", "no-entries"])
def test_non_positive_k_raises(name: str, k: int, empty: bool) -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        RANKERS[name]().rank([] if empty else REVIEWS, query="guitar", k=k)


# -- dense: the vector cache --------------------------------------------------------------


class BowEmbedder:
    """Bag of words hashed into ``dim`` buckets, L2-normalized; records every text it embeds.

    ``salt`` changes the hashing, so two instances with different salts are different
    "models" whose vectors are told apart in the tests.
    """

    def __init__(self, name: str = "fake-bow", *, dim: int = 16, salt: str = "", version: str = "1") -> None:
        self.name, self.dim, self.version, self.salt = name, dim, version, salt
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        self.calls.append(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int(hashlib.md5(f"{self.salt}{word}".encode()).hexdigest(), 16) % self.dim
                out[row, bucket] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    @property
    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]


DOCS = {
    "r1": "bright guitar strings",
    "r2": "sturdy keyboard stand",
    "r3": "loud drum kit for the garage",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'dense.db'}")
    s.add(
        [
            Document(user_id="u", doc_id=d, doc_kind="review", text=t, timestamp=i)
            for i, (d, t) in enumerate(DOCS.items())
        ]
    )
    yield s
    s.close()


def _history(store: Store, user: str = "u") -> list[HistoryEntry]:
    return load_history(store, user_id=user)


def test_dense_ranks_by_cosine_of_the_fake_vectors(store: Store) -> None:
    emb = BowEmbedder()
    entries = _history(store)
    hits = DenseRanker(emb, store=store).rank(entries, query="guitar strings", k=3)
    assert len(hits) == 3 and hits[0].entry.entry_id == "doc:r1"
    vecs = emb.embed([e.text for e in entries])
    q = emb.embed(["guitar strings"])[0]
    expected = {e.entry_id: float(v @ q) for e, v in zip(entries, vecs, strict=True)}
    assert {h.entry.entry_id: h.score for h in hits} == pytest.approx(expected)
    assert DenseRanker(emb).rank([], query="guitar", k=3) == []
    assert len(DenseRanker(emb).rank(entries, query="guitar", k=1)) == 1


def test_dense_vectors_are_cached_in_memory_and_in_the_store(store: Store) -> None:
    emb = BowEmbedder()
    entries = _history(store)
    ranker = DenseRanker(emb, store=store)
    ranker.rank(entries, query="guitar", k=2)
    assert emb.calls == [list(DOCS.values()), ["guitar"]]

    emb.calls.clear()
    ranker.rank(entries, query="drums", k=2)
    assert emb.calls == [["drums"]]  # only the query: every entry vector was cached

    fresh = DenseRanker(emb, store=store)  # no memory: the vectors come from the store
    first = fresh.rank(entries, query="garage drum kit", k=3)
    assert emb.calls == [["drums"], ["garage drum kit"]]
    assert _ids(first)[0] == "doc:r3"

    ids, mat, hashes = store.get_embeddings(user_id="u", model=emb.name)
    assert ids == ["doc:r1", "doc:r2", "doc:r3"] and mat.shape == (3, 16) and all(hashes)
    np.testing.assert_allclose(mat, BowEmbedder().embed(list(DOCS.values())), atol=1e-6)

    no_store = DenseRanker(emb)  # memory only: nothing is read from or written to a store
    emb.calls.clear()
    no_store.rank(entries, query="x", k=1)
    no_store.rank(entries, query="y", k=1)
    assert emb.calls == [list(DOCS.values()), ["x"], ["y"]]


def test_a_changed_text_is_re_embedded(store: Store) -> None:
    emb = BowEmbedder()
    ranker = DenseRanker(emb, store=store)
    ranker.rank(_history(store), query="guitar", k=1)
    store.add([Document(user_id="u", doc_id="r2", doc_kind="review", text="cheap guitar stand", timestamp=1)])
    emb.calls.clear()

    entries = _history(store)
    assert [e.text for e in entries if e.entry_id == "doc:r2"] == ["cheap guitar stand"]
    ranker.rank(entries, query="guitar", k=1)  # the same ranker: its memory holds the old text's vector
    assert emb.calls == [["cheap guitar stand"], ["guitar"]]

    emb.calls.clear()
    DenseRanker(emb, store=store).rank(entries, query="guitar", k=1)  # the store was updated too
    assert emb.calls == [["guitar"]]
    ids, mat, _ = store.get_embeddings(user_id="u", model=emb.name, doc_ids=["doc:r2"])
    assert ids == ["doc:r2"]
    np.testing.assert_allclose(mat[0], BowEmbedder().embed(["cheap guitar stand"])[0], atol=1e-6)


def test_same_model_name_with_another_dimension_is_refused(store: Store) -> None:
    DenseRanker(BowEmbedder(dim=16), store=store).rank(_history(store), query="guitar", k=1)
    store.add([Document(user_id="u", doc_id="r4", doc_kind="review", text="new violin bow", timestamp=9)])
    narrow = BowEmbedder(dim=8)  # same name "fake-bow", another vector space
    new_entry = [e for e in _history(store) if e.entry_id == "doc:r4"]
    with pytest.raises(ValueError, match="dimension 16 in this store, got 8"):  # writing it is refused
        DenseRanker(narrow, store=store).rank(new_entry, query="guitar", k=1)
    # Entries already stored at 16 dimensions are never reused as 8-dimensional vectors either
    # (today this surfaces as numpy's broadcast error rather than the store's message).
    with pytest.raises(ValueError):
        DenseRanker(narrow, store=store).rank(_history(store), query="guitar", k=1)
    ids, mat, _ = store.get_embeddings(user_id="u", model="fake-bow")
    assert mat.shape == (3, 16) and "doc:r4" not in ids  # the failed writes left nothing behind


def test_vectors_of_one_model_are_never_returned_for_another(store: Store) -> None:
    model_a = BowEmbedder("bow-a", salt="a")
    model_b = BowEmbedder("bow-b", salt="b")
    entries = _history(store)
    DenseRanker(model_a, store=store).rank(entries, query="guitar", k=3)
    hits_b = DenseRanker(model_b, store=store).rank(entries, query="guitar", k=3)
    assert model_b.calls[0] == list(DOCS.values())  # nothing of model A was taken for B

    vecs_b = BowEmbedder("bow-b", salt="b").embed(list(DOCS.values()))
    vecs_a = BowEmbedder("bow-a", salt="a").embed(list(DOCS.values()))
    assert not np.allclose(vecs_a, vecs_b)
    q_b = BowEmbedder("bow-b", salt="b").embed(["guitar"])[0]
    expected = {e.entry_id: float(v @ q_b) for e, v in zip(entries, vecs_b, strict=True)}
    assert {h.entry.entry_id: h.score for h in hits_b} == pytest.approx(expected)

    for model, vecs in (("bow-a", vecs_a), ("bow-b", vecs_b)):
        _, mat, _ = store.get_embeddings(user_id="u", model=model)
        np.testing.assert_allclose(mat, vecs, atol=1e-6)


def test_vectors_are_kept_per_user(store: Store) -> None:
    """Two users with the same document id: each is embedded from its own text and stored under its owner."""
    store.add([Document(user_id="v", doc_id="r1", doc_kind="review", text="violin rosin", timestamp=0)])
    emb = BowEmbedder()
    ranker = DenseRanker(emb, store=store)
    ranker.rank(_history(store, "u"), query="guitar", k=1)
    emb.calls.clear()
    hits = ranker.rank(_history(store, "v"), query="rosin", k=1)
    assert emb.calls == [["violin rosin"], ["rosin"]]
    assert hits[0].entry.user_id == "v" and hits[0].score == pytest.approx(1.0 / np.sqrt(2))
    ids, mat, _ = store.get_embeddings(user_id="v", model=emb.name)
    assert ids == ["doc:r1"]
    np.testing.assert_allclose(mat[0], BowEmbedder().embed(["violin rosin"])[0], atol=1e-6)


def test_history_entries_say_their_source_in_a_field(tmp_path) -> None:
    """Documents, interactions and facts are told apart by ``source``, not by parsing ids."""
    from tailorlm.data import Fact, Interaction, Item

    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    store.add([Document(user_id="u", doc_id="d1", text="a review", timestamp=1)])
    store.add([Item(item_id="i1", title="A Movie"), Interaction(user_id="u", item_id="i1", value=4, timestamp=2)])
    store.add_fact(Fact(fact_id="f1", user_id="u", text="lives in Berlin", valid_from=3))
    entries = load_history(store, user_id="u", source="all")
    assert [e.source for e in entries] == ["document", "interaction", "fact"]
    by_source = {e.source: e for e in entries}
    assert by_source["document"].source_id == "d1" and by_source["interaction"].title == "A Movie"
    assert by_source["fact"].text == "lives in Berlin"


def test_bm25_cache_keeps_a_digest_not_the_entries_and_tells_every_change_apart() -> None:
    """The cache holds no entry text (only a digest), yet any change of any field, of the
    order, or of where one field ends and the next begins, is a different history."""
    from tailorlm.retrieval.bm25 import _digest

    ranker = BM25Ranker()
    base = [_entry(0, "guitar strings", user="a"), _entry(1, "a keyboard stand", user="a")]
    ranker.rank(base, query="guitar", k=1)
    ((key, (n, _, users)),) = ranker._indexes.items()
    assert isinstance(key, bytes) and len(key) == 16 and n == 2 and users == {"a"}
    ranker.rank([HistoryEntry(e.entry_id, e.user_id, e.text, e.kind) for e in base], query="strings", k=1)
    assert ranker.builds == 1  # equal entries (new objects): the cached index
    one = HistoryEntry("doc:1", "a", "a keyboard stand", "review")
    variants = [
        HistoryEntry("doc:1", "a", "a keyboard stand!", "review"),  # the text
        HistoryEntry("doc:1", "a", "a keyboard stand", "review", title="x"),  # a title
        HistoryEntry("doc:1", "a", "a keyboard stand", "review", title=""),  # empty, not None
        HistoryEntry("doc:1", "b", "a keyboard stand", "review"),  # the user
        HistoryEntry("doc:2", "a", "a keyboard stand", "review"),  # the id
    ]
    digests = {_digest([base[0], v]) for v in [one, *variants]} | {_digest([one, base[0]])}
    assert len(digests) == len(variants) + 2
    # a boundary moved between fields: ("ab", "c") and ("a", "bc") are different entries
    assert _digest([HistoryEntry("c", "ab", "t", "k")]) != _digest([HistoryEntry("bc", "a", "t", "k")])
