"""Hand-worked small inputs per loader: exactly which records each line becomes.

LaMP's seven layouts are in ``test_loaders_lamp``; format detection, load reports
and streaming in ``test_loaders_registry``; the shared readers in ``test_loaders_io``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from loader_samples import AMAZON_ROWS, PERSONACHAT, POPQUORN, grouplens, jsonl, recbole, write

from tailorlm.data import Store
from tailorlm.data.loaders import (
    AmazonReviewsLoader,
    LoadError,
    detect_format,
    load_dataset,
    make_loader,
)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


# -- Amazon ------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_amazon_hand_worked(store: Store, tmp_path: Path, gz: bool) -> None:
    # the name says .json, the bytes may be gzip: detection is by magic bytes
    path = write(tmp_path / "reviews.json", jsonl(AMAZON_ROWS), gz=gz)
    report = load_dataset(store, "amazon", path)
    assert report.duplicates == 1 and report.skipped == 0
    assert report.added == {
        "users": 2,
        "items": 2,
        "documents": 3,
        "interactions": 3,
        "preferences": 0,
        "examples": 3,
        "embeddings": 0,
        "artifacts": 0,
        "facts": 0,
    }

    u1, u2 = store.get_user(user_id="amazon:U1"), store.get_user(user_id="amazon:U2")
    assert u1 is not None and u1.name == "Ann"
    assert u2 is not None and u2.name == "Bob"
    docs = store.get_documents(user_id="amazon:U1")
    assert [d.model_dump(exclude={"kind"}) for d in docs] == [
        {
            "user_id": "amazon:U1",
            "doc_id": "review:A2",
            "doc_kind": "review",
            "text": "Too bright",
            "title": None,
            "rating": 3.0,
            "item_id": "amazon:A2",
            "timestamp": 1357084800,
            "metadata": {},
        },
        {
            "user_id": "amazon:U1",
            "doc_id": "review:A1",
            "doc_kind": "review",
            "text": "Great strings",
            "title": "Love them",
            "rating": 5.0,
            "item_id": "amazon:A1",
            "timestamp": 1400000000,
            "metadata": {"helpful": [1, 2]},
        },
    ]
    (bob,) = store.get_documents(user_id="amazon:U2")
    assert (bob.text, bob.title, bob.rating) == ("", "Meh", 2.0)
    assert bob.metadata == {
        "verified": True,
        "style": {"Color:": " Black"},
        "vote": 1234,
        "image": ["http://x/1.jpg"],
    }
    assert store.get_examples(task="amazon-rating", user_id="amazon:U2") == []

    rating = store.get_examples(task="amazon-rating", user_id="amazon:U1")
    assert [(e.example_id, e.input, e.target, e.doc_id, e.timestamp) for e in rating] == [
        ("review:A1", "Great strings", "5", "review:A1", 1400000000),
        ("review:A2", "Too bright", "3", "review:A2", 1357084800),
    ]
    title = store.get_examples(task="amazon-title")
    assert [(e.user_id, e.input, e.target) for e in title] == [("amazon:U1", "Great strings", "Love them")]
    inter = store.get_interactions(user_id="amazon:U1")
    assert [(i.item_id, i.interaction, i.value, i.timestamp) for i in inter] == [
        ("amazon:A2", "rating", 3.0, 1357084800),
        ("amazon:A1", "rating", 5.0, 1400000000),
    ]
    assert sorted(store.get_items(["amazon:A1", "amazon:A2"])) == ["amazon:A1", "amazon:A2"]


def test_namespace_option(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", jsonl(AMAZON_ROWS[:1]))
    load_dataset(store, "amazon", path, namespace="")
    load_dataset(store, "amazon", path, namespace="shop")
    assert store.list_users() == ["U1", "shop:U1"]
    (doc,) = store.get_documents(user_id="shop:U1")
    assert doc.item_id == "shop:A1"
    (doc,) = store.get_documents(user_id="U1")
    assert doc.item_id == "A1"


def test_amazon_loader_streams_without_store(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", jsonl(AMAZON_ROWS))
    kinds = [r.kind for r in AmazonReviewsLoader().iter_records(path)]
    assert kinds == [
        "user",
        "document",
        "interaction",
        "example",
        "example",
        "user",
        "document",
        "interaction",
        "document",
        "interaction",
        "example",
    ]


def test_amazon_dedupe_off_keeps_the_last(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", jsonl(AMAZON_ROWS))
    report = load_dataset(store, "amazon", path, dedupe=False)
    assert report.duplicates == 0
    doc = next(d for d in store.get_documents(user_id="amazon:U1") if d.doc_id == "review:A1")
    assert doc.text == "Changed my mind"


def test_amazon_html_entities_are_unescaped_at_load(store: Store, tmp_path: Path) -> None:
    # as in the real dumps: quotes as &#34;, ampersands as &amp;, plus named entities
    rows = [
        {
            "reviewerID": "U1",
            "asin": "A1",
            "reviewerName": "A F&amp;T",
            "reviewText": "The &#34;warm&#34; tone &amp; sustain &quot;sing&quot; &lt;3 &mdash; 5&#8217;s",
            "overall": 5.0,
            "summary": "Rock &amp; roll &#34;yes&#34;",
            "unixReviewTime": 1400000000,
        },
        # a summary that is only an entity of whitespace still counts as no summary
        {"reviewerID": "U1", "asin": "A2", "reviewText": "AT&amp;T", "overall": 3.0, "summary": "&nbsp;"},
    ]
    path = write(tmp_path / "reviews.json.gz", jsonl(rows), gz=True)
    load_dataset(store, "amazon", path)
    text = 'The "warm" tone & sustain "sing" <3 \u2014 5\u2019s'
    docs = {d.doc_id: d for d in store.get_documents(user_id="amazon:U1")}
    assert (docs["review:A1"].text, docs["review:A1"].title) == (text, 'Rock & roll "yes"')
    assert (docs["review:A2"].text, docs["review:A2"].title) == ("AT&T", None)
    (title,) = store.get_examples(task="amazon-title")
    assert (title.input, title.target) == (text, 'Rock & roll "yes"')
    rating = {e.example_id: e.input for e in store.get_examples(task="amazon-rating")}
    assert rating == {"review:A1": text, "review:A2": "AT&T"}


# -- MovieLens ---------------------------------------------------------------------------


def _dump(store: Store) -> dict:
    users = {u: store.get_user(user_id=u) for u in store.list_users()}
    items = store.get_items([f"ml:{i}" for i in (1, 2, 3)])
    return {
        "users": {u: v.model_dump() for u, v in users.items() if v is not None},
        "items": {i: (v.title, v.attributes["year"], v.attributes["genres"]) for i, v in items.items()},
        "inter": {u: [i.model_dump() for i in store.get_interactions(user_id=u)] for u in users},
        "examples": [e.model_dump() for e in store.get_examples(task="movielens-rating")],
    }


def test_movielens_both_layouts_give_the_same_records(tmp_path: Path) -> None:
    a = Store(f"sqlite:///{tmp_path}/a.db")
    b = Store(f"sqlite:///{tmp_path}/b.db")
    ra = load_dataset(a, "movielens", grouplens(tmp_path / "gl"), namespace="ml")
    rb = load_dataset(b, "movielens", recbole(tmp_path / "rb") / "ml-tiny.user", namespace="ml")
    assert ra.added == rb.added
    assert ra.added["users"] == 2 and ra.added["items"] == 3 and ra.added["examples"] == 3
    da, db = _dump(a), _dump(b)
    assert da == db
    assert da["users"]["ml:1"] == {
        "kind": "user",
        "user_id": "ml:1",
        "name": None,
        "age": 24,
        "age_band": None,
        "gender": "M",
        "occupation": "technician",
        "location": "85711",
        "attributes": {},
    }
    assert da["items"] == {
        "ml:1": ("Toy Story", 1995, ["Comedy"]),
        "ml:2": ("Café Society, Le", 1996, ["Action", "Drama"]),
        "ml:3": ("unknown", None, ["unknown"]),
    }
    ex = {(e["user_id"], e["example_id"]): (e["input"], e["target"]) for e in da["examples"]}
    assert ex == {
        ("ml:1", "rating:1:874965758"): ("Toy Story (1995). Genres: Comedy.", "5"),
        ("ml:1", "rating:2:876893171"): ("Café Society, Le (1996). Genres: Action, Drama.", "3"),
        ("ml:2", "rating:1:888550871"): ("Toy Story (1995). Genres: Comedy.", "4"),
    }
    assert da["inter"]["ml:1"][0]["value"] == 5.0 and da["inter"]["ml:1"][0]["timestamp"] == 874965758
    gl_item = a.get_items(["ml:1"])["ml:1"]
    assert gl_item.attributes["imdb_url"] == "http://imdb/1"  # GroupLens extras are kept


def test_movielens_default_namespaces(tmp_path: Path) -> None:
    a = Store(f"sqlite:///{tmp_path}/a.db")
    load_dataset(a, "movielens", grouplens(tmp_path / "gl"))
    load_dataset(a, "movielens", recbole(tmp_path / "rb"))
    assert a.list_users() == ["ml-100k:1", "ml-100k:2", "ml-tiny:1", "ml-tiny:2"]


# -- Persona-Chat ------------------------------------------------------------------------


def test_personachat_hand_worked(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "chat.txt", PERSONACHAT)
    report = load_dataset(store, "personachat", path)
    assert report.added["users"] == 2 and report.added["examples"] == 3
    assert report.added["documents"] == 3 + 3  # persona facts + replies
    u0 = store.get_user(user_id="personachat:0")
    u1 = store.get_user(user_id="personachat:1")
    assert u0 is not None and u0.attributes == {"dialogue": 0}
    assert u1 is not None and u1.attributes == {"dialogue": 1, "partner_persona": ["i am a pilot."]}
    docs = store.get_documents(user_id="personachat:0")
    assert [(d.doc_id, d.doc_kind, d.text, d.timestamp) for d in docs] == [
        ("persona:0", "persona_fact", "i like cats.", 0),
        ("persona:1", "persona_fact", "i work nights.", 0),
        ("turn:1", "message", "good , just fed my cats .", 1),
        ("turn:2", "message", "i work nights at a bakery .", 2),
    ]
    assert docs[2].metadata == {"partner": "hi , how are you ?"}
    ex = store.get_examples(task="personachat-response", user_id="personachat:0")
    assert [(e.example_id, e.input, e.target, e.doc_id, e.timestamp) for e in ex] == [
        ("turn:1", "hi , how are you ?", "good , just fed my cats .", "turn:1", 1),
        ("turn:2", "what do you do ?", "i work nights at a bakery .", "turn:2", 2),
    ]
    assert ex[0].metadata == {"dialogue": 0, "history": []}
    assert ex[1].metadata == {
        "dialogue": 0,
        "history": [{"partner": "hi , how are you ?", "reply": "good , just fed my cats ."}],
        "candidates": ["yes", "no", "i work nights at a bakery ."],
    }
    # "strictly before" the second turn: the persona and the first reply, not the gold reply
    before = store.get_documents(user_id="personachat:0", before=ex[1].timestamp)
    assert [d.doc_id for d in before] == ["persona:0", "persona:1", "turn:1"]


# -- POPQUORN ----------------------------------------------------------------------------


def test_popquorn_hand_worked(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "raw.csv", POPQUORN)
    report = load_dataset(store, "popquorn", path)
    assert report.added["users"] == 2 and report.added["items"] == 2
    assert report.added["interactions"] == 3 and report.added["examples"] == 3
    u0 = store.get_user(user_id="popquorn:0")
    assert u0 is not None and u0.model_dump(exclude={"kind"}) == {
        "user_id": "popquorn:0",
        "name": None,
        "age": None,
        "age_band": "35-39",
        "gender": "Man",
        "occupation": "Unemployed",
        "location": None,
        "attributes": {"race": "White", "education": "High school"},
    }
    u9 = store.get_user(user_id="popquorn:9")
    assert u9 is not None and u9.attributes == {} and u9.gender == "Woman"
    items = store.get_items(["popquorn:530", "popquorn:77"])
    assert items["popquorn:77"].text == 'a "quoted"\nsecond line'
    ex = store.get_examples(task="popquorn-offensiveness", user_id="popquorn:0")
    assert [(e.example_id, e.input, e.target) for e in ex] == [
        ("530", "Nice riff, would recommend", "1"),
        ("77", 'a "quoted"\nsecond line', "4"),
    ]
    assert [i.value for i in store.get_interactions(user_id="popquorn:9")] == [2.0]


def test_csv_row_line_numbers_are_physical(tmp_path: Path) -> None:
    bad = POPQUORN + '1,2,"three\nfour\nfive",oops,Man,White,18-24,Student,College\n'
    path = write(tmp_path / "raw.csv", bad)
    with pytest.raises(LoadError) as info:
        load_dataset(Store("sqlite://"), "popquorn", path)
    assert info.value.line == 6 and info.value.field == "offensiveness"


# -- generic JSONL / CSV -----------------------------------------------------------------


def test_jsonl_mapping_defaults_and_extras(store: Store, tmp_path: Path) -> None:
    rows = [
        {
            "meta": {"author": "u1"},
            "body": "hello world",
            "stars": 4,
            "when": "2024-01-02T00:00:00Z",
            "lang": "en",
        },
        {"meta": {"author": 7}, "body": "second", "stars": None, "when": 1700000000},
    ]
    path = write(tmp_path / "posts.jsonl", jsonl(rows))
    assert detect_format(path) == "jsonl"
    mapping = {"user_id": "meta.author", "text": "body", "rating": "stars", "timestamp": "when"}
    report = load_dataset(store, "jsonl", path, mapping=mapping, defaults={"doc_kind": "post"})
    assert report.added["documents"] == 2
    (d1,) = store.get_documents(user_id="u1")
    assert (d1.doc_kind, d1.text, d1.rating, d1.timestamp) == (
        "post",
        "hello world",
        4.0,
        1704153600,
    )
    assert d1.metadata == {"lang": "en"}  # "meta" was used (meta.author), so not an extra
    (d7,) = store.get_documents(user_id="7")
    assert d7.rating is None and d7.timestamp == 1700000000


def test_jsonl_without_extras(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", jsonl([{"user_id": "u", "text": "t", "junk": 1}]))
    load_dataset(store, "jsonl", path, extras=False, namespace="mine")
    (d,) = store.get_documents(user_id="mine:u")
    assert d.metadata == {}


@pytest.mark.parametrize(
    ("record", "csv_text", "check"),
    [
        pytest.param(
            "user",
            "user_id,age,gender,city\nu1,31,F,Oslo\n",
            lambda s: (
                s.get_user(user_id="u1").model_dump(include={"age", "gender", "attributes"})
                == {"age": 31, "gender": "F", "attributes": {"city": "Oslo"}}
            ),
            id="user",
        ),
        pytest.param(
            "item",
            'item_id,title,attributes\ni1,Strings,"{""brand"": ""X""}"\n',
            lambda s: s.get_items(["i1"])["i1"].attributes == {"brand": "X"},
            id="item",
        ),
        pytest.param(
            "interaction",
            "user_id,item_id,interaction,value,timestamp\nu1,i1,click,,100\n",
            lambda s: (
                [(i.interaction, i.value, i.timestamp) for i in s.get_interactions(user_id="u1")]
                == [("click", None, 100)]
            ),
            id="interaction",
        ),
        pytest.param(
            "preference",
            "user_id,prompt,chosen,rejected,dimension\nu1,Title?,Short,Long one,brevity\n",
            lambda s: [(p.chosen, p.dimension) for p in s.get_preferences(user_id="u1")] == [("Short", "brevity")],
            id="preference",
        ),
        pytest.param(
            "example",
            "task,user_id,input,target\nmytask,u1,Question?,Answer\n",
            lambda s: [(e.input, e.target) for e in s.get_examples(task="mytask")] == [("Question?", "Answer")],
            id="example",
        ),
        pytest.param(
            "document",
            "user_id\ttext\trating\nu1\thi there\t5\n",
            lambda s: [(d.text, d.rating) for d in s.get_documents(user_id="u1")] == [("hi there", 5.0)],
            id="document-tsv",
        ),
    ],
)
def test_csv_record_types(store: Store, tmp_path: Path, record: str, csv_text: str, check) -> None:
    name = "data.tsv" if "\t" in csv_text else "data.csv"
    path = write(tmp_path / name, csv_text)
    report = load_dataset(store, "csv", path, record=record)
    assert report.records == 1
    assert check(store)


def test_generic_option_errors() -> None:
    with pytest.raises(ValueError, match="no field 'txt'"):
        make_loader("jsonl", mapping={"txt": "body"})
    with pytest.raises(ValueError, match="record must be one of"):
        make_loader("csv", record="tweet")
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        make_loader("xml")
    with pytest.raises(ValueError, match="bad options for the amazon loader"):
        make_loader("amazon", colour="red")
