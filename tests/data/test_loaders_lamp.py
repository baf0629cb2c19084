"""LaMP's seven layouts (questions + outputs JSON): the documents and examples each becomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loader_samples import write

from tailorlm.data import Document, Store, TaskExample
from tailorlm.data.loaders import LoadError, detect_format, load_dataset, make_loader


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


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
        ("Two friends on a road trip.", None, None, {"tag": "comedy", "label": "comedy"}),
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
        (
            "The match ended 2-1.",
            "Late winner",
            None,
            {"category": "sports", "label": "sports", "date": "2016-05-17"},
        ),
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
    path = write(folder / "dev_questions.json", json.dumps(questions, indent=2), gz=gz)
    if outputs:
        name = task.split("-")[0]
        golds = {
            "task": name,
            "golds": [{"id": "q1", "output": gold}, {"id": "q2", "output": gold}],
        }
        write(folder / "dev_outputs.json", json.dumps(golds))
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
    assert ex[1].metadata == {"profile_ids": [p["id"] for p in profile], "split": "dev"}
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


# -- splits, folders, per-question errors, dates, duplicates ----------------------------------

TWEET = "Paraphrase the following tweet without any explanation before or after it: "


def _q(qid: str, profile: list[dict] | None = None, **extra: object) -> dict:
    """A LaMP-7 question (the smallest layout)."""
    if profile is None:
        profile = [{"text": f"old tweet of {qid}", "id": f"{qid}-p1"}]
    return {"id": qid, "input": TWEET + qid, "profile": profile, **extra}


def _put(path: Path, questions: list[dict], golds: dict[str, str] | None = None, *, gz: bool = False) -> Path:
    """``questions`` as LaMP writes them (one line), and ``X_outputs.json`` when ``golds``."""
    write(path, json.dumps(questions), gz=gz)
    if golds is not None:
        outputs = {"task": "LaMP_7", "golds": [{"id": k, "output": v} for k, v in golds.items()]}
        write(path.with_name(path.name.replace("questions", "outputs").removesuffix(".gz")), json.dumps(outputs))
    return path


def _examples(path: Path, **options: object) -> list[TaskExample]:
    return [r for r in make_loader("lamp", **options).iter_records(path) if isinstance(r, TaskExample)]


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("train_questions.json", "train"),
        ("dev_questions.json", "dev"),
        ("VAL_questions.json.gz", "dev"),
        ("Validation-questions.json", "dev"),
        ("test_questions.json", "test"),
        ("questions.json", None),
        ("training_questions.json", None),  # "training" is not the "train_" prefix
    ],
)
def test_lamp_split_from_file_name(tmp_path: Path, name: str, split: str | None) -> None:
    path = _put(tmp_path / name, [_q("q1")], gz=name.endswith(".gz"))
    (ex,) = _examples(path)
    assert ex.metadata.get("split") == split
    assert ("split" in ex.metadata) == (split is not None)


def test_lamp_split_option(tmp_path: Path) -> None:
    path = _put(tmp_path / "dev_questions.json", [_q("q1")])
    assert [e.metadata["split"] for e in _examples(path, split="test")] == ["test"]  # the option wins
    plain = _put(tmp_path / "mine.json", [_q("q1")])
    assert [e.metadata["split"] for e in _examples(plain, split=" Train ")] == ["train"]
    with pytest.raises(ValueError, match="split must be one of train, dev, test, got 'valid'"):
        make_loader("lamp", split="valid")


def test_lamp_folder_loads_train_dev_and_test(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "LaMP_7"
    _put(folder / "train_questions.json", [_q("t1"), _q("t2")], {"t1": "a", "t2": "b"})
    _put(folder / "dev_questions.json.gz", [_q("d1")], {"d1": "c"}, gz=True)  # plain outputs next to .gz
    _put(folder / "test_questions.json", [_q("x1")])  # test: no outputs
    report = load_dataset(store, "lamp", folder)
    assert sorted(Path(f).name for f in report.files) == [
        "dev_outputs.json",
        "dev_questions.json.gz",
        "test_questions.json",
        "train_outputs.json",
        "train_questions.json",
    ]
    assert report.added["examples"] == 4 and report.added["documents"] == 4
    got = {e.example_id: (e.metadata["split"], e.target) for e in store.get_examples(task="lamp-7")}
    assert got == {"t1": ("train", "a"), "t2": ("train", "b"), "d1": ("dev", "c"), "x1": ("test", None)}
    assert store.get_documents(user_id="lamp7:x1")[0].text == "old tweet of x1"


def test_lamp_folder_options_and_task_must_agree(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    _put(folder / "train_questions.json", [_q("t1")], {"t1": "a"})
    _put(folder / "dev_questions.json", [_q("d1")], {"d1": "c"})
    with pytest.raises(LoadError, match=r"outputs= applies to one questions file, but the folder has 2"):
        make_loader("lamp", outputs=folder / "dev_outputs.json").files(folder)
    with pytest.raises(LoadError, match=r"split= applies to one questions file"):
        list(make_loader("lamp", split="dev").iter_records(folder))
    (folder / "dev_outputs.json").write_text(json.dumps({"task": "LaMP_4", "golds": [{"id": "d1", "output": "c"}]}))
    with pytest.raises(LoadError) as info:
        list(make_loader("lamp").iter_records(folder))
    assert Path(info.value.file).name == "dev_outputs.json" and info.value.field == "task"
    assert "says LaMP_4 but train_outputs.json says LaMP_7" in info.value.message
    with pytest.raises(LoadError, match=r"says LaMP_7 but task= says LaMP_4"):
        list(make_loader("lamp", task=4).iter_records(folder / "train_questions.json"))


def test_lamp_error_names_the_question_in_a_one_line_file(store: Store, tmp_path: Path) -> None:
    bad = _q("q2", [{"text": ["not", "text"], "id": "p"}])
    path = _put(tmp_path / "dev_questions.json", [_q("q1"), bad, _q("q3")], {"q1": "a", "q2": "b", "q3": "c"})
    with pytest.raises(LoadError) as info:
        load_dataset(store, "lamp", path)
    err = info.value
    assert (err.line, err.field) == (1, "profile[0].text")
    assert str(err).startswith("dev_questions.json:1: field 'profile[0].text': must be a string")
    assert str(err).endswith("; in question[1] (id 'q2')")
    report = load_dataset(store, "lamp", path, skip_bad=True)
    assert report.skipped == 1 and report.errors == [str(err)]
    assert sorted(e.example_id for e in store.get_examples(task="lamp-7")) == ["q1", "q3"]
    # Without a usable id the message still gives the place in the array.
    path2 = _put(tmp_path / "two" / "dev_questions.json", [_q("q1"), {"id": ["x"], "input": "y", "profile": []}])
    with pytest.raises(LoadError) as info:
        list(make_loader("lamp").iter_records(path2))
    assert str(info.value).endswith("; in question[1]") and info.value.field == "id"


def test_lamp_numeric_date_is_an_error(tmp_path: Path) -> None:
    path = _put(tmp_path / "dev_questions.json", [_q("q1", [{"text": "hi", "id": "p1", "date": 2016}])])
    with pytest.raises(LoadError) as info:
        list(make_loader("lamp").iter_records(path))
    assert info.value.field == "profile[0].date"
    assert 'got 2016 (a number); write it as a string like "2016" or "2016-05-17"' in info.value.message
    assert "in question[0] (id 'q1')" in str(info.value)
    path2 = _put(tmp_path / "b" / "dev_questions.json", [_q("q1", [{"text": "hi", "id": "p1", "date": "May 2016"}])])
    with pytest.raises(LoadError, match=r"must be a date like '2016', '2016-05' or '2016-05-17', got 'May 2016'"):
        list(make_loader("lamp").iter_records(path2))


def test_lamp_drop_bad_optional(store: Store, tmp_path: Path) -> None:
    profile = [{"text": "hi", "id": "p1", "date": 2016}, {"text": "yo", "id": "p2", "date": "2017-03"}]
    path = _put(tmp_path / "dev_questions.json", [_q("q1", profile)], {"q1": "x"})
    loader = make_loader("lamp", drop_bad_optional=True)
    records = list(loader.iter_records(path))
    assert loader.dropped_fields == 1 and len(records) == 3
    report = load_dataset(store, "lamp", path, drop_bad_optional=True)
    assert report.skipped == 0 and report.added["examples"] == 1
    docs = {d.doc_id: d for d in store.get_documents(user_id="lamp7:q1")}
    assert (docs["p1"].timestamp, docs["p1"].metadata) == (None, {})
    assert (docs["p2"].timestamp, docs["p2"].metadata) == (1488326400, {"date": "2017-03"})  # kept
    # Other optional fields too: a news title that is not text (LaMP-2 needs no title).
    news = [{"text": "t", "title": {"x": 1}, "category": "sports", "id": "n1", "date": "2016"}]
    path2 = _put(tmp_path / "n" / "dev_questions.json", [_q("q9", news)])
    with pytest.raises(LoadError, match="must be a string"):
        list(make_loader("lamp", task=2).iter_records(path2))
    loader = make_loader("lamp", task=2, drop_bad_optional=True)
    (doc,) = [r for r in loader.iter_records(path2) if isinstance(r, Document)]
    assert (doc.title, doc.timestamp, doc.metadata["label"], loader.dropped_fields) == (None, 1451606400, "sports", 1)


def test_lamp_duplicate_profile_item_keeps_the_first(store: Store, tmp_path: Path) -> None:
    profile = [{"text": "first", "id": "p1"}, {"text": "second", "id": "p1"}, {"text": "other", "id": "p2"}]
    path = _put(tmp_path / "dev_questions.json", [_q("q1", profile)])
    report = load_dataset(store, "lamp", path)
    assert report.duplicates == 1 and report.skipped == 0
    docs = {d.doc_id: d.text for d in store.get_documents(user_id="lamp7:q1")}
    assert docs == {"p1": "first", "p2": "other"}
    (ex,) = store.get_examples(task="lamp-7")
    assert ex.metadata["profile_ids"] == ["p1", "p2"]


def test_lamp_duplicate_question_id(store: Store, tmp_path: Path) -> None:
    again = _q("q1", [{"text": "not this one", "id": "z"}])
    path = _put(tmp_path / "dev_questions.json", [_q("q1"), again, _q("q2")])
    with pytest.raises(LoadError) as info:
        load_dataset(store, "lamp", path)
    assert info.value.field == "id"
    assert "question id 'q1' appears twice: it was already loaded from dev_questions.json question[0]" in str(
        info.value
    )
    assert str(info.value).endswith("; in question[1] (id 'q1')")
    report = load_dataset(store, "lamp", path, skip_bad=True)
    assert report.skipped == 1 and report.added["examples"] == 2
    assert [d.doc_id for d in store.get_documents(user_id="lamp7:q1")] == ["q1-p1"]
    # Across the files of a folder.
    folder = tmp_path / "f"
    _put(folder / "train_questions.json", [_q("a")])
    _put(folder / "dev_questions.json", [_q("a")])
    with pytest.raises(LoadError, match=r"already loaded from train_questions.json question\[0\]") as info:
        list(make_loader("lamp").iter_records(folder))
    assert Path(info.value.file).name == "dev_questions.json"


def test_lamp_empty_profile(store: Store, tmp_path: Path) -> None:
    path = _put(tmp_path / "test_questions.json", [_q("q1", [])])
    report = load_dataset(store, "lamp", path)
    assert report.added["examples"] == 1 and report.added["documents"] == 0
    (ex,) = store.get_examples(task="lamp-7")
    assert ex.metadata == {"profile_ids": [], "split": "test"}


def test_cli_drop_bad_optional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tailorlm import load_settings
    from tailorlm.cli import app

    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TAILORLM_STORE_URL", raising=False)
    path = _put(tmp_path / "dev_questions.json", [_q("q1", [{"text": "hi", "id": "p1", "date": 2016}])])
    runner = CliRunner()
    r = runner.invoke(app, ["data", "load", str(path), "--format", "lamp"], catch_exceptions=False)
    assert r.exit_code == 1 and "profile[0].date" in r.output and "nothing was stored" in r.output
    args = ["data", "load", str(path), "--format", "lamp", "--drop-bad-optional"]
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    with Store.from_settings(load_settings()) as s:
        (doc,) = s.get_documents(user_id="lamp7:q1")
    assert (doc.doc_id, doc.timestamp) == ("p1", None)
