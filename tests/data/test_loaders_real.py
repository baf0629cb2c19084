"""The loaders on the real datasets in ../shared/data: the README's counts, and idempotent reloads.

Skipped with the reason when the folder is absent (set TAILORLM_SHARED_DATA to point elsewhere).
"""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from tailorlm.data import Store
from tailorlm.data.loaders import detect_format, load_dataset

SHARED = Path(os.environ.get("TAILORLM_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(
        not SHARED.is_dir(),
        reason=f"real datasets not found at {SHARED} (set TAILORLM_SHARED_DATA to their folder)",
    ),
]

AMAZON = SHARED / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz"
MOVIELENS = SHARED / "movielens-100k"
PERSONACHAT = SHARED / "personachat" / "valid_self_original_no_cands.txt"
POPQUORN = SHARED / "popquorn-offensiveness" / "offensiveness_raw_data.csv"

# README sha256 values (for the single-file datasets the load's sha256 is the file's).
SHA = {
    "amazon": "03f9cc27ae13a454cb4ea6cb620fb10546cc1194ef921441d1c5f34addff2748",
    "personachat": "7e26e8a266583dfe21fd2df4c651a2831dceeb7c87be9c7bb517974d9979c363",
    "popquorn": "fb0589093d45da76bf4ef4d0abff679b540bdd5b17af5764913b3ccd0a069e1e",
}

# Table counts after one load, from the README (documents/examples derived as documented
# in each loader: Amazon has 7 reviews without text -> no examples for them; Persona-Chat
# has 4,483 persona facts + 7,801 replies).
EXPECTED = {
    "amazon": (
        AMAZON,
        {
            "users": 1429,
            "items": 900,
            "documents": 10261,
            "interactions": 10261,
            "examples": 2 * (10261 - 7),
        },
    ),
    "movielens": (
        MOVIELENS,
        {"users": 943, "items": 1682, "documents": 0, "interactions": 100_000, "examples": 100_000},
    ),
    "personachat": (
        PERSONACHAT,
        {"users": 1000, "items": 0, "documents": 4483 + 7801, "interactions": 0, "examples": 7801},
    ),
    "popquorn": (
        POPQUORN,
        {"users": 262, "items": 1500, "documents": 0, "interactions": 13036, "examples": 13036},
    ),
}


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


@pytest.mark.parametrize("fmt", list(EXPECTED))
def test_real_dataset_counts_and_idempotent_reload(store: Store, fmt: str) -> None:
    path, expected = EXPECTED[fmt]
    assert detect_format(path) == fmt
    seen: list[tuple[int, int]] = []
    report = load_dataset(store, fmt, path, progress=lambda done, total: seen.append((done, total)))
    counts = store.counts()
    assert {k: counts[k] for k in expected} == expected
    assert {k: report.added[k] for k in expected} == expected
    assert report.skipped == 0 and report.errors == [] and report.duplicates == 0
    if fmt in SHA:
        assert report.sha256 == SHA[fmt]
    total = sum(p.stat().st_size for p in ([path] if path.is_file() else path.iterdir()))
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    CHECKS.get(fmt, lambda s: None)(store)

    again = load_dataset(store, fmt, path)
    assert store.counts() == counts
    assert set(again.added.values()) == {0}
    assert again.sha256 == report.sha256
    loads = store.list_loads()
    assert [x["source"] for x in loads] == [fmt, fmt]
    assert loads[0]["sha256"] == report.sha256 and loads[0]["records"] == report.records


def _check_amazon(store: Store) -> None:
    assert store.list_tasks() == {"amazon-rating": 10254, "amazon-title": 10254}
    # The first line of the file, field by field.
    uid = "amazon:A2IBPI20UZIR0U"
    user = store.get_user(user_id=uid)
    assert user is not None and user.name == "cassandra tu \"Yeah, well, that's just like, u..."
    doc = next(d for d in store.get_documents(user_id=uid) if d.doc_id == "review:1384719342")
    assert doc.doc_kind == "review" and doc.rating == 5.0 and doc.title == "good"
    assert doc.item_id == "amazon:1384719342" and doc.timestamp == 1393545600
    assert doc.text.startswith("Not much to write about here")
    assert doc.metadata == {"helpful": [0, 0]}
    ex = [e for e in store.get_examples(task="amazon-rating", user_id=uid) if e.doc_id == doc.doc_id]
    assert len(ex) == 1 and ex[0].target == "5" and ex[0].input == doc.text
    # Rating distribution from the README.
    targets = [e.target for e in store.get_examples(task="amazon-rating")]
    dist = {r: targets.count(r) for r in "12345"}
    docs_per_rating: dict[float, int] = defaultdict(int)
    for u in store.list_users():
        for d in store.get_documents(user_id=u):
            docs_per_rating[d.rating] += 1  # type: ignore[index]
    assert dict(docs_per_rating) == {1.0: 217, 2.0: 250, 3.0: 772, 4.0: 2084, 5.0: 6938}
    assert sum(dist.values()) == 10254


def _check_movielens(store: Store) -> None:
    user = store.get_user(user_id="ml-100k:1")
    assert user is not None
    assert (user.age, user.gender, user.occupation, user.location) == (
        24,
        "M",
        "technician",
        "85711",
    )
    toy = store.get_items(["ml-100k:1"])["ml-100k:1"]
    assert toy.title == "Toy Story"
    assert toy.attributes == {"year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    ex = [
        e
        for e in store.get_examples(task="movielens-rating", user_id="ml-100k:196")
        if e.example_id == "rating:242:881250949"
    ]
    assert len(ex) == 1 and ex[0].target == "3" and ex[0].timestamp == 881250949
    assert ex[0].input == "Kolya (1996). Genres: Comedy."
    inter = store.get_interactions(user_id="ml-100k:196")
    assert len(inter) == len(store.get_examples(task="movielens-rating", user_id="ml-100k:196"))


def _check_personachat(store: Store) -> None:
    uid = "personachat:0"
    persona = store.get_documents(user_id=uid, doc_kind="persona_fact")
    assert [d.text for d in persona] == [
        "i read twenty books a year.",
        "i'm a stunt double as my second job.",
        "i only eat kosher.",
        "i was raised in a single parent household.",
    ]
    ex = store.get_examples(task="personachat-response", user_id=uid)
    first = next(e for e in ex if e.example_id == "turn:1")
    assert first.input == "hello what are doing today ?"
    assert first.target == "i am good , i just got off work and tired , i have two jobs ."
    assert first.metadata["history"] == []
    before = store.get_documents(user_id=uid, before=3)
    assert [d.doc_id for d in before][-2:] == ["turn:1", "turn:2"] and len(before) == 6


def _check_popquorn(store: Store) -> None:
    user = store.get_user(user_id="popquorn:0")
    assert user is not None
    assert (user.gender, user.age_band, user.occupation) == ("Man", "35-39", "Unemployed")
    assert user.attributes == {"race": "White", "education": "High school diploma or equivalent"}
    item = store.get_items(["popquorn:530"])["popquorn:530"]
    assert item.text == "I think a lot of Dethklok songs use drop C, would defo recommend"
    ex = [e for e in store.get_examples(task="popquorn-offensiveness", user_id="popquorn:0") if e.example_id == "530"]
    assert len(ex) == 1 and ex[0].target == "1" and ex[0].input == item.text


CHECKS = {
    "amazon": _check_amazon,
    "movielens": _check_movielens,
    "personachat": _check_personachat,
    "popquorn": _check_popquorn,
}


def test_real_movielens_from_one_file(tmp_path: Path) -> None:
    """``path`` may be any one file of the MovieLens folder; only the layout is resolved here."""
    from tailorlm.data.loaders import MovieLensLoader

    names = [p.name for p in MovieLensLoader().files(MOVIELENS / "ml-100k.item")]
    assert names == ["ml-100k.user", "ml-100k.item", "ml-100k.inter"]


def test_real_amazon_as_lamp3_roundtrip(store: Store, tmp_path: Path) -> None:
    """Convert the Amazon reviews to the LaMP-3 layout (each user's latest review is the
    question, the others the profile) and load that back with the LaMP loader."""
    reviews: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(AMAZON, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["reviewText"].strip():
                reviews[r["reviewerID"]].append(r)
    questions, golds = [], []
    for uid, rs in sorted(reviews.items()):
        rs.sort(key=lambda r: (r["unixReviewTime"], r["asin"]))
        *profile, last = rs
        qid = f"q-{uid}"
        questions.append(
            {
                "id": qid,
                "user_id": uid,
                "input": "What is the score of the following review on a scale of 1 to 5? just "
                "answer with 1, 2, 3, 4, or 5 without further explanation. review: " + last["reviewText"],
                "profile": [
                    {
                        "text": p["reviewText"],
                        "score": str(int(p["overall"])),
                        "id": p["asin"],
                        "date": p["reviewTime"].replace(",", "")[-4:],
                    }
                    for p in profile
                ],
            }
        )
        golds.append({"id": qid, "output": str(int(last["overall"]))})
    qpath = tmp_path / "dev_questions.json"
    qpath.write_text(json.dumps(questions, indent=1), encoding="utf-8")
    (tmp_path / "dev_outputs.json").write_text(json.dumps({"task": "LaMP_3", "golds": golds}))

    report = load_dataset(store, "lamp", qpath, namespace="amazon")
    n_profile = sum(len(q["profile"]) for q in questions)
    assert report.added["users"] == len(reviews) == 1429
    assert report.added["examples"] == 1429
    assert report.added["documents"] == n_profile == 10254 - 1429
    ex = store.get_examples(task="lamp-3")
    assert {e.example_id: e.target for e in ex} == {g["id"]: g["output"] for g in golds}
    first = questions[0]
    uid = f"amazon:{first['user_id']}"
    docs = {d.doc_id: d for d in store.get_documents(user_id=uid)}
    assert set(docs) == {p["id"] for p in first["profile"]}
    p0 = first["profile"][0]
    assert docs[p0["id"]].doc_kind == "review" and docs[p0["id"]].rating == float(p0["score"])
    assert docs[p0["id"]].text == p0["text"]
    # Loading the real Amazon file next to it: same users, LaMP profile docs are separate rows.
    load_dataset(store, "amazon", AMAZON)
    assert store.counts()["users"] == 1429
