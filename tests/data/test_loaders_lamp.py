"""LaMP's seven layouts (questions + outputs JSON): the documents and examples each becomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loader_samples import write

from tailorlm.data import Store
from tailorlm.data.loaders import LoadError, detect_format, load_dataset


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
