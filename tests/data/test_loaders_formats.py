"""Hand-worked small inputs per loader: exactly which records each line becomes."""

from __future__ import annotations

import gzip
import json
import pickle
import random
from pathlib import Path

import pytest

from tailorlm.data import Store
from tailorlm.data.loaders import (
    LOADERS,
    AmazonReviewsLoader,
    LoadError,
    count_lines,
    detect_format,
    iter_json_array,
    load_dataset,
    make_loader,
    open_text,
)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


def _write(path: Path, text: str | bytes, *, gz: bool = False) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# -- Amazon ------------------------------------------------------------------------------

AMAZON_ROWS = [
    {
        "reviewerID": "U1",
        "asin": "A1",
        "reviewerName": "Ann",
        "helpful": [1, 2],
        "reviewText": "Great strings",
        "overall": 5.0,
        "summary": "Love them",
        "unixReviewTime": 1400000000,
        "reviewTime": "05 13, 2014",
    },
    # 2018 layout, no reviewText: kept with text "" (it has a summary), no examples
    {
        "overall": 2.0,
        "verified": True,
        "reviewTime": "05 13, 2014",
        "reviewerID": "U2",
        "asin": "A1",
        "style": {"Color:": " Black"},
        "reviewerName": "Bob",
        "summary": "Meh",
        "unixReviewTime": 1399939200,
        "vote": "1,234",
        "image": ["http://x/1.jpg"],
    },
    # no name, no summary, no unixReviewTime: rating example only, time from reviewTime
    {
        "reviewerID": "U1",
        "asin": "A2",
        "reviewText": "Too bright",
        "overall": 3,
        "reviewTime": "01 02, 2013",
    },
    # a second review of A1 by U1: dropped, the first one is kept
    {
        "reviewerID": "U1",
        "asin": "A1",
        "reviewText": "Changed my mind",
        "overall": 1.0,
        "summary": "No",
    },
]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_amazon_hand_worked(store: Store, tmp_path: Path, gz: bool) -> None:
    # the name says .json, the bytes may be gzip: detection is by magic bytes
    path = _write(tmp_path / "reviews.json", _jsonl(AMAZON_ROWS), gz=gz)
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
    path = _write(tmp_path / "r.json", _jsonl(AMAZON_ROWS[:1]))
    load_dataset(store, "amazon", path, namespace="")
    load_dataset(store, "amazon", path, namespace="shop")
    assert store.list_users() == ["U1", "shop:U1"]
    (doc,) = store.get_documents(user_id="shop:U1")
    assert doc.item_id == "shop:A1"
    (doc,) = store.get_documents(user_id="U1")
    assert doc.item_id == "A1"


def test_amazon_loader_streams_without_store(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.json", _jsonl(AMAZON_ROWS))
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


# -- MovieLens ---------------------------------------------------------------------------

GL_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n"
GL_GENRE = "".join(f"{g}|{i}\n" for i, g in enumerate(["unknown", "Action", "Comedy", "Drama"])) + "\n"
GL_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://imdb/1|0|0|1|0\n"
    "2|Café Society, Le (1996)|01-Jan-1996||http://imdb/2|0|1|0|1\n"
    "3|unknown||||1|0|0|0\n"
)
GL_DATA = "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n"

RB_USER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" + "".join(
    "\t".join(line.split("|")) + "\n" for line in GL_USER.splitlines()
)
RB_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tComedy\n2\tCafé Society, Le\t1996\tAction Drama\n3\tunknown\t\tunknown\n"
)
RB_INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + GL_DATA


def _grouplens(folder: Path) -> Path:
    _write(folder / "u.user", GL_USER)
    _write(folder / "u.genre", GL_GENRE)
    _write(folder / "u.item", GL_ITEM.encode("latin-1"))
    _write(folder / "u.data", GL_DATA)
    return folder


def _recbole(folder: Path) -> Path:
    _write(folder / "ml-tiny.user", RB_USER)
    _write(folder / "ml-tiny.item", RB_ITEM)
    _write(folder / "ml-tiny.inter", RB_INTER, gz=True)  # gzip under a plain name
    return folder


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
    ra = load_dataset(a, "movielens", _grouplens(tmp_path / "gl"), namespace="ml")
    rb = load_dataset(b, "movielens", _recbole(tmp_path / "rb") / "ml-tiny.user", namespace="ml")
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
    load_dataset(a, "movielens", _grouplens(tmp_path / "gl"))
    load_dataset(a, "movielens", _recbole(tmp_path / "rb"))
    assert a.list_users() == ["ml-100k:1", "ml-100k:2", "ml-tiny:1", "ml-tiny:2"]


# -- Persona-Chat ------------------------------------------------------------------------

PERSONACHAT = (
    "1 your persona: i like cats.\n"
    "2 your persona: i work nights.\n"
    "3 hi , how are you ?\tgood , just fed my cats .\n"
    "4 what do you do ?\ti work nights at a bakery .\t\tyes|no|i work nights at a bakery .\n"
    "1 partner's persona: i am a pilot.\n"
    "2 your persona: i surf.\n"
    "3 __SILENCE__\thello , i surf .\n"
)


def test_personachat_hand_worked(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "chat.txt", PERSONACHAT)
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

POPQUORN = (
    "instance_id,user_id,text,offensiveness,gender,race,age,occupation,education\n"
    '530,0,"Nice riff, would recommend",1.0,Man,White,35-39,Unemployed,High school\n'
    '77,0,"a ""quoted""\nsecond line",4.0,Man,White,35-39,Unemployed,High school\n'
    '530,9,"Nice riff, would recommend",2.0,Woman,,18-24,Student,\n'
)


def test_popquorn_hand_worked(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "raw.csv", POPQUORN)
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
    path = _write(tmp_path / "raw.csv", bad)
    with pytest.raises(LoadError) as info:
        load_dataset(Store("sqlite://"), "popquorn", path)
    assert info.value.line == 6 and info.value.field == "offensiveness"


# -- LaMP: the seven layouts -------------------------------------------------------------

LAMP_FIXTURES = {
    "LaMP_1": (
        'For an author who has written the paper with the title "Deep nets", which reference is '
        'related? Just answer with [1] or [2] without explanation. [1]: "A" [2]: "B"',
        [
            {"title": "Old paper", "abstract": "We study things.", "id": "101"},
            {"title": "Older paper", "abstract": "We studied things.", "id": "102"},
        ],
        "[1]",
        "paper",
        ("We study things.", "Old paper", None, {}),
    ),
    "LaMP_2": (
        "Which tag does this movie relate to among the following tags? Just answer with the "
        "tag name without further explanation. tags: [sci-fi, comedy] description: A robot "
        "learns to love.",
        [
            {"description": "Two friends on a road trip.", "tag": "comedy", "id": "201"},
            {"description": "Spaceships fight.", "tag": "sci-fi", "id": "202"},
        ],
        "sci-fi",
        "movie",
        ("Two friends on a road trip.", None, None, {"tag": "comedy"}),
    ),
    "LaMP_2-news": (
        "Which category does this article relate to among the following categories? Just "
        "answer with the category name without further explanation. categories: [women, "
        "sports] article: Goal!",
        [
            {
                "text": "The match ended 2-1.",
                "title": "Late winner",
                "category": "sports",
                "id": "251",
                "date": "2016-05-17",
            },
            {"text": "Parliament voted.", "title": "Vote", "category": "politics", "id": "252"},
        ],
        "sports",
        "article",
        ("The match ended 2-1.", "Late winner", None, {"category": "sports", "date": "2016-05-17"}),
    ),
    "LaMP_3": (
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, "
        "2, 3, 4, or 5 without further explanation. review: Works fine.",
        [
            {"text": "Broke in a day.", "score": "1", "id": "301"},
            {"text": "Lovely tone.", "score": "5", "id": "302"},
        ],
        "4",
        "review",
        ("Broke in a day.", None, 1.0, {}),
    ),
    "LaMP_4": (
        "Generate a headline for the following article: The council approved the new park.",
        [
            {
                "text": "Rain is expected all week.",
                "title": "Wet week ahead",
                "id": "401",
                "date": "2019",
            },
            {"text": "Prices rose again.", "title": "Inflation up", "id": "402"},
        ],
        "Park approved",
        "article",
        ("Rain is expected all week.", "Wet week ahead", None, {"date": "2019"}),
    ),
    "LaMP_5": (
        "Generate a title for the following abstract of a paper: We propose a method.",
        [
            {"title": "A survey", "abstract": "We survey methods.", "id": "501"},
            {"title": "A benchmark", "abstract": "We benchmark methods.", "id": "502"},
        ],
        "A method",
        "abstract",
        ("We survey methods.", "A survey", None, {}),
    ),
    "LaMP_6": (
        "Generate a subject for the following email: Please find the report attached.",
        [
            {"text": "Lunch at noon?", "title": "Lunch", "id": "601"},
            {"text": "Meeting moved to 3pm.", "title": "Meeting", "id": "602"},
        ],
        "Report",
        "email",
        ("Lunch at noon?", "Lunch", None, {}),
    ),
    "LaMP_7": (
        "Paraphrase the following tweet without any explanation before or after it: so tired today",
        [
            {"text": "coffee first, talk later", "id": "701"},
            {"text": "mondays, am i right", "id": "702"},
        ],
        "exhausted today lol",
        "tweet",
        ("coffee first, talk later", None, None, {}),
    ),
}


def _lamp_files(folder: Path, task: str, *, outputs: bool = True, gz: bool = False) -> Path:
    inp, profile, gold, _, _ = LAMP_FIXTURES[task]
    questions = [
        {"id": "q1", "input": inp, "profile": profile},
        {"id": "q2", "input": inp + " (again)", "profile": profile[:1], "user_id": "alice"},
    ]
    path = _write(folder / "dev_questions.json", json.dumps(questions, indent=2), gz=gz)
    if outputs:
        name = task.split("-")[0]
        golds = {
            "task": name,
            "golds": [{"id": "q1", "output": gold}, {"id": "q2", "output": gold}],
        }
        _write(folder / "dev_outputs.json", json.dumps(golds))
    return path


@pytest.mark.parametrize("task", list(LAMP_FIXTURES))
@pytest.mark.parametrize("outputs", [True, False], ids=["with-outputs", "inferred"])
def test_lamp_layouts(store: Store, tmp_path: Path, task: str, outputs: bool) -> None:
    _, profile, gold, kind, (text, title, rating, meta) = LAMP_FIXTURES[task]
    n = task.split("_")[1][0]
    path = _lamp_files(tmp_path, task, outputs=outputs)
    assert detect_format(path) == "lamp"
    report = load_dataset(store, "lamp", path)
    assert report.added["users"] == 2 and report.added["documents"] == 3
    assert report.added["examples"] == 2
    ns = f"lamp{n}"
    docs = store.get_documents(user_id=f"{ns}:q1")
    assert [d.doc_id for d in sorted(docs, key=lambda d: d.doc_id)] == [p["id"] for p in profile]
    first = next(d for d in docs if d.doc_id == profile[0]["id"])
    assert (first.doc_kind, first.text, first.title, first.rating, first.metadata) == (
        kind,
        text,
        title,
        rating,
        meta,
    )
    ex = store.get_examples(task=f"lamp-{n}")
    assert [(e.user_id, e.example_id) for e in ex] == [(f"{ns}:alice", "q2"), (f"{ns}:q1", "q1")]
    assert all(e.target == (gold if outputs else None) for e in ex)
    assert ex[1].metadata == {"profile_ids": [p["id"] for p in profile]}
    assert ex[1].input == LAMP_FIXTURES[task][0]


def test_lamp_dates_and_gzip(store: Store, tmp_path: Path) -> None:
    path = _lamp_files(tmp_path, "LaMP_2-news", gz=True)
    load_dataset(store, "lamp", path, namespace="news", task=2)
    d = {x.doc_id: x for x in store.get_documents(user_id="news:q1")}
    assert d["251"].timestamp == 1463443200  # 2016-05-17 UTC
    assert d["252"].timestamp is None
    path4 = _lamp_files(tmp_path / "four", "LaMP_4")
    load_dataset(store, "lamp", path4, outputs=tmp_path / "four" / "dev_outputs.json")
    d4 = {x.doc_id: x for x in store.get_documents(user_id="lamp4:q1")}
    assert d4["401"].timestamp == 1546300800  # "2019" -> 2019-01-01 UTC


def test_lamp_missing_gold_is_an_error(tmp_path: Path) -> None:
    path = _lamp_files(tmp_path, "LaMP_7")
    (tmp_path / "dev_outputs.json").write_text(json.dumps({"task": "LaMP_7", "golds": [{"id": "q1", "output": "x"}]}))
    with pytest.raises(LoadError) as info:
        load_dataset(Store("sqlite://"), "lamp", path)
    assert info.value.field == "id" and "no gold output" in info.value.message
    assert info.value.line is not None and info.value.line > 2


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
    path = _write(tmp_path / "posts.jsonl", _jsonl(rows))
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
    path = _write(tmp_path / "p.jsonl", _jsonl([{"user_id": "u", "text": "t", "junk": 1}]))
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
    path = _write(tmp_path / name, csv_text)
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


# -- detection, helpers, errors ----------------------------------------------------------


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path / "a.bin", _jsonl(AMAZON_ROWS), gz=True)) == "amazon"
    assert detect_format(_write(tmp_path / "c.txt", PERSONACHAT)) == "personachat"
    assert detect_format(_write(tmp_path / "p.csv", POPQUORN)) == "popquorn"
    assert detect_format(_write(tmp_path / "x.csv", "a,b\n1,2\n")) == "csv"
    assert detect_format(_grouplens(tmp_path / "gl")) == "movielens"
    assert detect_format(_recbole(tmp_path / "rb") / "ml-tiny.inter") == "movielens"
    assert detect_format(_write(tmp_path / "n.txt", "just some prose")) is None
    assert detect_format(tmp_path / "missing") is None
    assert set(LOADERS) == {
        "amazon",
        "movielens",
        "lamp",
        "personachat",
        "popquorn",
        "jsonl",
        "csv",
    }


def test_auto_format(store: Store, tmp_path: Path) -> None:
    report = load_dataset(store, "auto", _write(tmp_path / "c.txt", PERSONACHAT))
    assert report.source == "personachat"


def test_load_report_and_history(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.txt", PERSONACHAT)
    calls: list[tuple[int, int]] = []
    report = load_dataset(store, "personachat", path, progress=lambda d, t: calls.append((d, t)))
    size = path.stat().st_size
    assert calls[-1] == (size, size)
    assert report.records_per_second == pytest.approx(report.records / report.seconds)
    import hashlib

    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    (load,) = store.list_loads()
    assert load["sha256"] == report.sha256 and load["skipped"] == 0
    assert load["counts"] == report.added and load["path"] == str(path.resolve())


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_iter_json_array_matches_json_load(tmp_path: Path, chunk: int) -> None:
    data = [{"a": [1, 2, {"b": "x\ny"}]}, 12345678901234, "ünï", None, True, 1.5e10, [], {}]
    text = "\ufeff [\n" + ",\n".join(json.dumps(x, ensure_ascii=False) for x in data) + "\n]  \n"
    path = _write(tmp_path / "a.json", text)
    got = list(iter_json_array(path, chunk_size=chunk))
    assert [v for _, v in got] == data
    assert [n for n, _ in got] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert list(iter_json_array(_write(tmp_path / "e.json", "[]"))) == []


@pytest.mark.parametrize(
    ("text", "line"),
    [('[{"a": 1},\n{"a": }]', 2), ('{"a": 1}', 1), ("[1, 2\n\n", 3), ("[1] x", 1)],
    ids=["bad-value", "not-an-array", "unterminated", "trailing-data"],
)
def test_iter_json_array_errors(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(LoadError) as info:
        list(iter_json_array(_write(tmp_path / "a.json", text)))
    assert info.value.line == line and not info.value.recoverable


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_open_text_and_count_lines(tmp_path: Path, gz: bool) -> None:
    path = _write(tmp_path / "t", b"\xef\xbb\xbffirst\nsecond\r\nbad \xff\nlast", gz=gz)
    assert count_lines(path) == 4
    with open_text(path) as lines:
        assert next(lines) == "first\n" and next(lines) == "second\r\n"
        with pytest.raises(LoadError) as info:
            next(lines)
        assert info.value.line == 3 and info.value.recoverable
        assert next(lines) == "last" and lines.lineno == 4  # iteration goes on after a bad line


def test_load_error_format_and_pickle() -> None:
    err = LoadError("must be a number, got 'five'", file="/data/reviews.json.gz", line=17, field="overall")
    assert str(err) == "reviews.json.gz:17: field 'overall': must be a number, got 'five'"
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.file, back.line, back.field, back.message) == (
        err.file,
        17,
        "overall",
        err.message,
    )
    assert str(LoadError("empty", file="x.csv")) == "x.csv: empty"


def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset(store, "amazon", tmp_path / "nope.json")
    with pytest.raises(LoadError, match="no MovieLens data"):
        load_dataset(store, "movielens", tmp_path)


def test_amazon_dedupe_off_keeps_the_last(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "r.json", _jsonl(AMAZON_ROWS))
    report = load_dataset(store, "amazon", path, dedupe=False)
    assert report.duplicates == 0
    doc = next(d for d in store.get_documents(user_id="amazon:U1") if d.doc_id == "review:A1")
    assert doc.text == "Changed my mind"


def _big(tmp_path: Path, fmt: str, gz: bool) -> Path:
    """About 2 MB (random words, so gzip cannot shrink it much) in the format of ``fmt``."""
    rng = random.Random(0)
    words = [" ".join(f"{rng.getrandbits(40):x}" for _ in range(6)) for _ in range(20_000)]
    if fmt == "amazon":
        rows = [{**AMAZON_ROWS[0], "asin": f"A{i}", "reviewText": w} for i, w in enumerate(words)]
        return _write(tmp_path / "big.json", _jsonl(rows), gz=gz)
    if fmt == "popquorn":
        head = POPQUORN.split("\n", 1)[0] + "\n"
        body = "".join(f"{i},{i % 50},{w},2.0,Man,White,18-24,Student,College\n" for i, w in enumerate(words))
        return _write(tmp_path / "big.csv", head + body, gz=gz)
    if fmt == "personachat":  # many short dialogues: a dialogue is buffered until it ends
        text = "".join(f"1 your persona: i like {w}.\n2 hi {w}\treply {w}\n" for w in words)
        return _write(tmp_path / "big.txt", text, gz=gz)
    if fmt == "lamp":
        qs = [
            json.dumps(
                {
                    "id": f"q{i}",
                    "input": f"Paraphrase the following tweet: {w}",
                    "profile": [{"text": w, "id": "1"}],
                }
            )
            for i, w in enumerate(words)
        ]
        return _write(tmp_path / "big_questions.json", "[" + ",\n".join(qs) + "]", gz=gz)
    folder = tmp_path / "ml"
    inter = "".join(f"{i % 900}\t{rng.getrandbits(40)}\t{i % 5 + 1}\t{rng.getrandbits(30)}\n" for i in range(100_000))
    _write(folder / "ml-big.inter", RB_INTER + inter, gz=gz)
    return folder


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("fmt", ["amazon", "popquorn", "personachat", "lamp", "movielens"])
def test_loaders_stream(tmp_path: Path, fmt: str, gz: bool) -> None:
    """The first records come out after reading a small part of the file, not all of it."""
    from tailorlm.data.loaders import ByteTracker

    path = _big(tmp_path, fmt, gz)
    loader = make_loader(fmt)
    size = sum(p.stat().st_size for p in loader.files(path))
    tracker = ByteTracker(size)
    records = loader.iter_records(path, tracker=tracker)
    for _ in range(5):
        next(records)
    assert size > 200_000 and tracker.read <= 200_000 < size, (tracker.read, size)
    records.close()
