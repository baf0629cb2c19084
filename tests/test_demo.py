"""The demo quotes what was measured and recommends only real, unrated catalogue items.

A side-by-side answer shows what a method does, not whether it helps, so each case carries
the gain table's line (or "not measured"); and a small model asked for "a movie" invents
titles, so the recommendation case must list collaborative-filtering candidates from the
store. The whole walkthrough runs here with a fake model on a tiny hand-made store.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import tailorlm.demo as demo
from tailorlm.data import Store
from tailorlm.data.records import Document, Interaction, Item, User
from tailorlm.eval.recsys import RecSetup
from tailorlm.personalize import Query
from tailorlm.settings import Settings
from tailorlm.testing import FakeGenerator

MINUS = "\u2212"


def _entry(**over: Any) -> dict[str, Any]:
    """One task of the gain table, as the suite writes it (shape of ``personalization_gains``)."""
    entry = {
        "metric": "rouge1",
        "lower_is_better": False,
        "baseline": {"row": "identity / generate", "value": 0.05, "ci": [0.03, 0.08]},
        "best": {"row": "rag-bm25 / generate", "value": 0.061, "ci": [0.04, 0.09]},
        "delta": 0.011,
        "delta_ci": [-0.002, 0.024],
        "p": 0.0912,
        "n": 40,
        "wins": False,
        "best_llm": None,
        "verdict": "no personalized row beats identity / generate (best: rag-bm25 / generate; CI includes 0)",
    }
    return entry | over


# -- gain lookup ---------------------------------------------------------------------------


def test_measured_gain_quotes_the_matching_row() -> None:
    gains = {"tasks": {"amazon-title": _entry()}}
    assert demo.measured_gain(gains, "amazon-title", "rag-bm25") == (
        "measured on amazon-title (n=40): rag-bm25 / generate vs identity / generate: "
        f"ROUGE-1 +0.011 [{MINUS}0.002, 0.024], p=0.091 \u2014 not significant"
    )


def test_measured_gain_prefers_the_llm_row_and_reads_its_own_comparison() -> None:
    llm = {"row": "rag-bm25 [user] / choice-calibrated", "value": 0.8, "ci": [0.7, 0.9]}
    llm |= {"delta": -0.12, "delta_ci": [-0.2, -0.04], "p": 0.004, "n": 60, "wins": True}
    entry = _entry(
        metric="mae",
        lower_is_better=True,
        best={"row": "recency / retrieval-vote", "value": 0.7, "ci": [0.6, 0.8]},
        best_llm=llm,
    )
    line = demo.measured_gain({"tasks": {"amazon-rating": entry}}, "amazon-rating", "rag-bm25")
    assert line == (
        "measured on amazon-rating (n=60): rag-bm25 [user] / choice-calibrated vs identity / generate: "
        f"MAE (lower is better) {MINUS}0.120 [{MINUS}0.200, {MINUS}0.040], p=0.004 \u2014 significant gain"
    )
    # the best (non-LLM) row matches another method, with the task-level comparison
    line = demo.measured_gain({"tasks": {"amazon-rating": entry}}, "amazon-rating", "recency")
    assert line.startswith("measured on amazon-rating (n=40): recency / retrieval-vote vs identity / generate")
    assert line.endswith("not significant")


def test_measured_gain_says_not_measured_otherwise() -> None:
    gains = {"tasks": {"amazon-title": _entry()}}
    verdict = _entry()["verdict"]
    # the table has the task but not this method: the task's verdict, then "not measured"
    assert demo.measured_gain(gains, "amazon-title", "recency+attributes") == (
        f"amazon-title: {verdict}; this method: not measured"
    )
    # a longer spec that merely starts alike is another method; so is a shorter one
    plus = {"tasks": {"amazon-title": _entry(best={"row": "rag-bm25+profile / generate", "value": 0, "ci": [0, 0]})}}
    assert demo.measured_gain(plus, "amazon-title", "rag-bm25").endswith("this method: not measured")
    assert demo.measured_gain(gains, "amazon-title", "rag").endswith("this method: not measured")
    # a matching row without a paired comparison claims nothing
    nocomp = {"tasks": {"amazon-title": _entry(delta=None, delta_ci=None, p=None, n=0)}}
    assert demo.measured_gain(nocomp, "amazon-title", "rag-bm25").endswith("this method: not measured")
    # no entry for the task, or no table at all
    assert demo.measured_gain(gains, "recommendation", "recency+attributes") == "recommendation: not measured"
    assert demo.measured_gain(None, "amazon-title", "rag-bm25") == "amazon-title: not measured (no gain table found)"


def test_gain_table_location_and_graceful_absence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    packaged = demo.find_gains()  # nothing in the working directory: the packaged copy, if any
    assert packaged is None or packaged.name == "gains.json"
    default = tmp_path / demo.GAINS_IN_CWD
    default.parent.mkdir(parents=True)
    default.write_text(json.dumps({"tasks": {"amazon-title": _entry()}}), encoding="utf-8")
    assert demo.find_gains() == demo.GAINS_IN_CWD
    assert demo.load_gains(demo.find_gains()) == {"tasks": {"amazon-title": _entry()}}
    assert demo.find_gains(tmp_path / "mine.json") == tmp_path / "mine.json"  # an explicit path wins
    assert demo.load_gains(tmp_path / "mine.json") is None  # missing
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    assert demo.load_gains(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    assert demo.load_gains(tmp_path / "list.json") is None
    assert demo.load_gains(None) is None


# -- recommendation candidates -------------------------------------------------------------

MOVIES = {
    "ml-100k:1": ("Toy Story", 1995),
    "ml-100k:2": ("GoldenEye", 1995),
    "ml-100k:3": ("Four Rooms", 1995),
    "ml-100k:4": ("Get Shorty", 1995),
    "ml-100k:5": ("Copycat", 1995),
    "ml-100k:6": ("Chasing Amy", 1997),
    "ml-100k:7": ("Chasing Amy", 1997),  # ML-100K lists some movies twice under two ids
    "ml-100k:8": ("Babe", 1995),
}
RATED = {  # user -> rated items; ml-100k:9 is rated but has no catalogue row (a stub item)
    "ml-100k:u1": ["ml-100k:1", "ml-100k:2"],
    "ml-100k:u2": ["ml-100k:1", "ml-100k:2", "ml-100k:3", "ml-100k:9"],
    "ml-100k:u3": ["ml-100k:1", "ml-100k:3", "ml-100k:4", "ml-100k:9", "ml-100k:6"],
    "ml-100k:u4": ["ml-100k:9", "ml-100k:7", "ml-100k:3"],
}


def _movie_store(store: Store) -> Store:
    items = [Item(item_id=i, title=t, attributes={"year": y, "genres": ["Comedy"]}) for i, (t, y) in MOVIES.items()]
    inter = [
        Interaction(user_id=u, item_id=i, value=float(1 + n % 5), timestamp=1_000 + n)
        for u, its in RATED.items()
        for n, i in enumerate(its)
    ]
    store.add([*(User(user_id=u) for u in RATED), *items, *inter])
    return store


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'demo.db'}")
    yield s
    s.close()


def _labels(store: Store, user: str) -> tuple[set[str], set[str]]:
    """(labels of every titled catalogue item, labels of the items ``user`` rated)."""
    items = store.get_items(list(MOVIES))
    labels = {i: f"{it.title} ({it.attributes['year']})" for i, it in items.items()}
    return set(labels.values()), {labels[i] for i in RATED[user] if i in labels}


def test_candidates_by_popularity_are_real_unrated_and_distinct(store: Store) -> None:
    _movie_store(store)
    items, source = demo.recommendation_candidates(store, "ml-100k:u1", n=5)
    assert source == "most popular"
    ids = [it.item_id for it in items]
    # by users: 1, 3, 9 (3 each), 2 (2), 4, 6, 7 (1 each); u1 rated 1 and 2, 9 is a stub without a
    # title, 7 repeats 6's label; 5 and 8 nobody rated, so popularity never ranks them
    assert ids == ["ml-100k:3", "ml-100k:4", "ml-100k:6"]
    assert not set(ids) & set(RATED["ml-100k:u1"])
    assert demo.recommendation_candidates(store, "ml-100k:u1", n=2)[0] == items[:2]


def test_candidates_by_bpr_when_it_knows_the_user(store: Store) -> None:
    _movie_store(store)
    ids = [*MOVIES, "ml-100k:9"]
    users = list(RATED)
    scores = np.arange(len(ids), dtype=float)  # BPR prefers higher ids: 9, 8, 7, ...
    setup = RecSetup(
        users=users,
        items=ids,
        train={},
        valid={},
        test={},
        held_out={},
        popularity=np.zeros(len(ids)),
        bpr_user=np.ones((len(users), 1)),
        bpr_item=scores[:, None],
        bpr_bias=np.zeros(len(ids)),
    )
    items, source = demo.recommendation_candidates(store, "ml-100k:u3", n=3, setup=setup)
    assert source == "BPR"
    # 9: rated and a stub; 8; 7 is "Chasing Amy (1997)", which u3 rated as item 6 under another id, but
    # a different id is a different catalogue item, so it may appear; 6 rated; 5
    assert [it.item_id for it in items] == ["ml-100k:8", "ml-100k:7", "ml-100k:5"]
    unknown, source = demo.recommendation_candidates(store, "ml-100k:new", n=3, setup=setup)
    assert source == "most popular" and unknown


def test_recommendation_case_names_only_store_items_the_user_has_not_rated(store: Store) -> None:
    _movie_store(store)
    cases = {u: q for u, _, _, q in demo._cases(store)}
    assert set(cases) == {"ml-100k:u1", "ml-100k:u2"}  # the first two MovieLens users
    for user, query in cases.items():
        assert query.task == "recommendation" and not query.choices  # candidates come when shown
        filled, line = demo.with_candidates(store, user, query)
        catalogue, rated = _labels(store, user)
        assert filled.choices and set(filled.choices) <= catalogue
        assert not set(filled.choices) & rated
        assert set(filled.metadata["item_ids"]).isdisjoint(RATED[user])
        assert line.startswith("candidates (most popular, catalogue items this user has not rated): [1] ")


# -- the walkthrough -------------------------------------------------------------------------


def _amazon_user(store: Store) -> None:
    texts = ["Great strings, bright tone", "The tuner holds well", "Cable crackles, returned it", "Warm pick sound"]
    docs = [
        Document(
            user_id="amazon:A",
            doc_id=f"review:B{n}",
            doc_kind="review",
            text=t,
            title=f"title {n}",
            rating=4.0,
            item_id=f"amazon:B{n}",
            timestamp=1_000 + n,
        )
        for n, t in enumerate(texts)
    ]
    store.add([User(user_id="amazon:A"), *docs])


def test_run_demo_shows_gains_and_real_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    _amazon_user(_movie_store(store))
    settings = Settings(cache_dir=tmp_path, store_url=store.url)
    gains = tmp_path / "gains.json"
    gains.write_text(json.dumps({"tasks": {"amazon-title": _entry()}}), encoding="utf-8")
    monkeypatch.setenv("TAILORLM_SHARED_DATA", str(tmp_path / "no-shared-data"))
    monkeypatch.setattr("tailorlm.data.fetch.fetch_movielens_100k", lambda cache: tmp_path)
    monkeypatch.setattr(demo, "_load_once", lambda *a, **k: None)
    monkeypatch.setattr("tailorlm.models.build_generator", lambda settings: FakeGenerator())
    console = Console(record=True, width=200)
    demo.run_demo(settings, console=console, serve=False, gains=gains)
    out = console.export_text()

    assert f"measured gains: {gains}" in out
    assert "user amazon:A: title for their latest review" in out  # ids and titles are text, not markup or emoji
    assert (
        "measured on amazon-title (n=40): rag-bm25 / generate vs identity / generate: "
        f"ROUGE-1 +0.011 [{MINUS}0.002, 0.024]" in out
    )
    assert out.count("recommendation: not measured") == 2
    candidate_lines = re.findall(r"^candidates \((.*?), catalogue items this user has not rated\): (.*)$", out, re.M)
    assert len(candidate_lines) == 2
    assert {src for src, _ in candidate_lines} <= {"BPR", "most popular"}  # BPR when it trains on so few ratings
    for (_, listed), user in zip(candidate_lines, ["ml-100k:u1", "ml-100k:u2"], strict=True):
        catalogue, rated = _labels(store, user)
        named = set(re.findall(r"\[\d+\] (.*?)(?:;|$)", listed))
        assert named and named <= catalogue and not named & rated
    # every ranked answer lists only real catalogue items (both answers of both users: 4 cells)
    rows = re.findall(r"^│ (.*?)\s*│ (.*?)\s*│$", out, re.M)
    ranked = [cell for row in rows for cell in row if re.match(r"\d+\. ", cell)]
    assert len(ranked) >= 4
    catalogue = _labels(store, "ml-100k:u1")[0]
    assert {re.sub(r"^\d+\. ", "", cell) for cell in ranked} <= catalogue


def test_query_choices_are_a_permutation_target() -> None:
    """Parsing a ranking answer can only reorder the candidates, so the shown list is never invented."""
    query = Query("which?", task="recommendation", choices=("Babe (1995)", "Copycat (1995)"))
    shown = demo._ranked("I'd pick [2], then Babe", query)
    assert shown.startswith("ranked:\n1. Copycat (1995)\n2. Babe (1995)\n\nraw model output")
    assert demo._ranked("Jurassic Park!", query).startswith("ranked:\n1. Babe (1995)\n2. Copycat (1995)\n\n")


def test_a_load_by_an_older_amazon_loader_is_redone(tmp_path: Path, store: Store) -> None:
    """A store filled before the loader unescaped HTML would otherwise keep ``&#34;`` in every prompt."""
    row = {"reviewerID": "U", "asin": "B", "reviewText": "a &#34;warm&#34; tone", "overall": 5.0, "summary": "ok"}
    path = tmp_path / "reviews.json.gz"
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    old = demo._LOADER_CHANGED_AT["amazon"] - 1
    store.record_load(source="amazon", path=str(path), sha256=digest, started_at=old, records=0, skipped=0, counts={})
    console = Console(record=True, width=200)
    demo._load_once(store, "amazon", path, console)
    (doc,) = store.get_documents(user_id="amazon:U")
    assert doc.text == 'a "warm" tone'
    demo._load_once(store, "amazon", path, console)  # now loaded by the current loader: skipped
    assert "reviews.json.gz: already loaded" in console.export_text()
    assert len(store.list_loads()) == 2
