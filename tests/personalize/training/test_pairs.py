"""Derived preference pairs: never the same user, never the future, idempotent, dimension twins."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.data import Document, Preference, Store, TaskExample
from tailorlm.personalize.training.pairs import (
    SOURCE_DIMENSION,
    SOURCE_OTHER_USER,
    PairConfig,
    derive_pairs,
    first_sentence,
    training_pairs,
)
from tailorlm.testing import amazon_subset

AMAZON = "amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz"

# (user, item, time, title, review)
REVIEWS = [
    ("carol", "stand1", 100, "Sturdy stand", "This keyboard stand holds my weighted piano without wobbling at all."),
    ("bob", "str1", 200, "Bright and loud", "These guitar strings sound bright and loud on my acoustic guitar."),
    ("alice", "str2", 300, "Warm nylon tone", "Nylon guitar strings with a warm tone, they sound lovely on my guitar."),
    ("dave", "str3", 400, "Best strings ever", "Guitar strings that sound warm and bright, nylon, best on my guitar."),
    ("alice", "cab1", 500, "Tidy cables", "Short patch cables for my pedalboard, tidy and quiet, no hum."),
    ("bob", "cab2", 50, "Cheap cable", "A patch cable for pedals, it hums a little but works."),
]


def _store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}", files_dir=tmp_path / "files")
    recs: list = []
    for uid, item, ts, title, text in REVIEWS:
        doc = Document(user_id=uid, doc_kind="review", text=text, title=title, item_id=item, timestamp=ts)
        recs.append(doc)
        recs.append(
            TaskExample(
                task="amazon-title",
                example_id=doc.doc_id or "",
                user_id=uid,
                input=text,
                target=title,
                doc_id=doc.doc_id,
                timestamp=ts,
                metadata={"item_id": item},
            )
        )
    s.add(recs)
    return s


def test_other_user_pairs_use_the_nearest_earlier_review_of_someone_else(tmp_path: Path) -> None:
    store = _store(tmp_path)
    report = derive_pairs(store, ["alice"])
    prefs = {p.chosen: p for p in store.get_preferences(user_id="alice")}
    # Strings review at t=300: dave's strings review is more similar but written later (t=400);
    # bob's earlier strings review is the nearest eligible one, not carol's keyboard stand.
    assert prefs["Warm nylon tone"].rejected == "Bright and loud"
    # Cables review at t=500: bob's cable review (t=50) is the most similar one before it.
    assert prefs["Tidy cables"].rejected == "Cheap cable"
    assert all(p.source == SOURCE_OTHER_USER and p.dimension is None for p in prefs.values())
    assert prefs["Warm nylon tone"].timestamp == 300
    assert (
        "Nylon guitar strings" in prefs["Warm nylon tone"].prompt and "short title" in prefs["Warm nylon tone"].prompt
    )
    assert report.stored == {SOURCE_OTHER_USER: 2}


def test_pairs_never_use_the_same_user_or_the_future(tmp_path: Path) -> None:
    store = _store(tmp_path)
    report = derive_pairs(store, ["alice", "bob", "carol", "dave"])
    assert report.skipped == {f"{SOURCE_OTHER_USER}: no similar earlier review by another user": 2}
    written = {(u, title): ts for u, _, ts, title, _ in REVIEWS}
    for uid in ("alice", "bob", "carol", "dave"):
        for p in store.get_preferences(user_id=uid):
            owners = [(u, ts) for (u, title), ts in written.items() if title == p.rejected]
            assert owners and all(u != uid for u, _ in owners), p
            assert all(ts < (p.timestamp or 0) for _, ts in owners), p
    # carol's stand review (t=100): only bob's t=50 cable review precedes, sharing no word with it: no pair
    assert store.get_preferences(user_id="carol") == []
    # bob's t=50 review has nothing before it: skipped, not paired with the future
    assert {p.chosen for p in store.get_preferences(user_id="bob")} == {"Bright and loud"}


def test_population_limits_whose_titles_are_used(tmp_path: Path) -> None:
    store = _store(tmp_path)
    derive_pairs(store, ["alice"], population=["carol", "alice"])
    rejected = {p.rejected for p in store.get_preferences(user_id="alice")}
    assert rejected == {"Sturdy stand"}  # bob and dave are outside the population


def test_derivation_is_idempotent(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cfg = PairConfig(dimensions=True)
    derive_pairs(store, ["alice", "dave"], config=cfg)
    first = {u: store.get_preferences(user_id=u) for u in ("alice", "dave")}
    counts = store.counts()
    derive_pairs(store, ["alice", "dave"], config=cfg)
    assert store.counts() == counts
    assert {u: store.get_preferences(user_id=u) for u in ("alice", "dave")} == first


def test_dimension_twins_and_training_selection(tmp_path: Path) -> None:
    store = _store(tmp_path)
    text = (
        "I bought this tuner for my home studio and it has worked every single day. "
        "It clips on the headstock, reads fast and the battery lasts months."
    )
    store.add([Document(user_id="alice", doc_kind="review", text=text, title="Great tuner", timestamp=600)])
    derive_pairs(store, ["alice"], config=PairConfig(other_user=False, dimensions=True))
    concise = store.get_preferences(user_id="alice", dimension="concise")
    detailed = store.get_preferences(user_id="alice", dimension="detailed")
    assert len(concise) == len(detailed) == 1  # the other reviews are one sentence: no pair
    assert concise[0].chosen == "Great tuner" == detailed[0].rejected
    assert concise[0].rejected == first_sentence(text)[0] == detailed[0].chosen
    assert "It clips on the headstock" in concise[0].prompt and "worked every single day" not in concise[0].prompt
    assert concise[0].source == SOURCE_DIMENSION

    # preferences from elsewhere (the workbench) are training data too; undated ones only without a cut-off
    store.add(
        [
            Preference(user_id="alice", prompt="Title?", chosen="Short", rejected="Long one", source="workbench"),
            Preference(user_id="alice", prompt="T?", chosen="a", rejected="b", source="workbench", timestamp=50),
        ]
    )
    derive_pairs(store, ["alice"])
    task_pairs = training_pairs(store, ["alice"])
    assert {p.source for p in task_pairs} == {SOURCE_OTHER_USER, "workbench"}  # dimension twins left out
    assert len(task_pairs) == 4
    before = training_pairs(store, ["alice"], before=400)
    assert {(p.chosen, p.source) for p in before} == {("Warm nylon tone", SOURCE_OTHER_USER), ("a", "workbench")}
    assert [p.chosen for p in training_pairs(store, ["alice"], dimension="detailed")] == [detailed[0].chosen]
    only_wb = training_pairs(store, ["alice"], sources=["workbench"])
    assert {p.source for p in only_wb} == {"workbench"}


def test_bad_config_is_named() -> None:
    with pytest.raises(ValueError, match="generation task"):
        PairConfig(task="amazon-rating")
    with pytest.raises(ValueError, match="candidates"):
        PairConfig(candidates=0)


def test_base_output_needs_a_generator(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the generator"):
        derive_pairs(_store(tmp_path), ["alice"], config=PairConfig(base_output=True))


def test_base_output_pairs_with_a_generator(tmp_path: Path) -> None:
    from tailorlm.testing import FakeGenerator

    store = _store(tmp_path)
    derive_pairs(store, ["alice"], config=PairConfig(other_user=False, base_output=True), generator=FakeGenerator())
    prefs = store.get_preferences(user_id="alice")
    assert {p.source for p in prefs} == {"derived:base-output"}
    assert all(p.rejected.startswith("echo:") and p.chosen in ("Warm nylon tone", "Tidy cables") for p in prefs)


@pytest.mark.data
def test_real_amazon_reviews_give_leak_free_pairs(shared_data: Path, tmp_path: Path) -> None:
    from tailorlm.data.loaders import load_dataset

    store = Store(f"sqlite:///{tmp_path / 's.db'}", files_dir=tmp_path / "files")
    load_dataset(store, "amazon", amazon_subset(shared_data / AMAZON, tmp_path / "sub.json"))
    users = store.list_users()
    report = derive_pairs(store, users, config=PairConfig(dimensions=True))
    assert report.stored[SOURCE_OTHER_USER] >= len(users)
    docs = {(u, d.title): d for u in users for d in store.get_documents(user_id=u)}
    for uid in users:
        prefs = training_pairs(store, [uid])
        assert prefs and all(p.source == SOURCE_OTHER_USER for p in prefs)
        for p in prefs:
            sources = [d for (u, title), d in docs.items() if title == p.rejected and u != uid]
            assert sources and any((d.timestamp or 0) < (p.timestamp or 0) for d in sources)
    assert report.stored.get(f"{SOURCE_DIMENSION} [concise]", 0) > 0
    counts = store.counts()
    derive_pairs(store, users, config=PairConfig(dimensions=True))
    assert store.counts() == counts


def test_deleting_a_user_removes_derived_pairs_of_others_that_quote_their_titles(tmp_path: Path) -> None:
    store = _store(tmp_path)
    derive_pairs(store, ["alice"])  # both of alice's pairs reject one of bob's titles
    given = Preference(user_id="alice", prompt="p", chosen="Mine", rejected="Bright and loud", source="workbench")
    store.add([given])
    assert {p.rejected for p in store.get_preferences(user_id="alice")} == {"Bright and loud", "Cheap cable"}
    report = store.delete_user(user_id="bob")
    assert report.rows["derived_preferences_of_others"] == 2
    left = store.get_preferences(user_id="alice")
    assert [(p.source, p.rejected) for p in left] == [("workbench", "Bright and loud")]  # what alice gave stays
    assert "Cheap cable" not in str(store.export_user(user_id="alice"))
    derive_pairs(store, ["alice"])  # re-derived from the users who remain: never bob again
    assert "Bright and loud" not in {
        p.rejected for p in store.get_preferences(user_id="alice") if p.source != "workbench"
    }
