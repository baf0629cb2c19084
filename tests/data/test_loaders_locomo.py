"""LoCoMo's public layout: two users per conversation, dated turns, questions of every category.

The file is written by the test (tests/locomo_samples.py) in the public ``locomo10.json``
layout: two conversations, an image turn, an adversarial question, a numeric answer and
evidence that holds two dia_ids in one string.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from locomo_samples import locomo_samples, write_locomo
from tailorlm.data import Document, Store
from tailorlm.data.loaders import LoadError, detect_format, load_dataset
from tailorlm.data.loaders._errors import Where
from tailorlm.data.loaders.locomo import ABSTAIN_ANSWER, parse_session_time

CAROLINE, MELANIE = "locomo:conv-26:Caroline", "locomo:conv-26:Melanie"


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


def test_hand_worked_session_time() -> None:
    """LoCoMo's "1:56 pm on 8 May, 2023" is 2023-05-08 13:56 UTC: 19485 days after 1970-01-01
    (53 years with 13 leap days = 19358, plus Jan 31 + Feb 28 + Mar 31 + Apr 30 = 120, plus 7)
    = 1683504000 s, plus 13 h 56 min = 50160 s: 1683554160."""
    assert parse_session_time("1:56 pm on 8 May, 2023", Where("f"), "d") == 1683554160


@pytest.mark.parametrize(
    "text",
    ["1:56 pm on 8 May, 2023", "1:56 PM on 8 May 2023", "1:56 pm  on 8 May, 2023", "1:56 pm on May 8, 2023",
     "2023-05-08T13:56:00", "2023-05-08T13:56:00Z", "2023-05-08 13:56"],
    ids=["locomo", "upper-no-comma", "spaces", "month-first", "iso", "iso-z", "iso-space"],
)  # fmt: skip
def test_session_time_formats(text: str) -> None:
    assert parse_session_time(text, Where("f"), "d") == 1683554160


def test_loads_both_speakers_and_every_dated_turn(store: Store, tmp_path: Path) -> None:
    report = load_dataset(store, "locomo", write_locomo(tmp_path / "locomo10.json"))
    assert report.added["users"] == 4 and report.added["documents"] == 2 * (6 + 3) and report.added["examples"] == 9
    assert sorted(store.list_users()) == [
        "locomo:conv-26:Caroline",
        "locomo:conv-26:Melanie",
        "locomo:conv-30:Gina",
        "locomo:conv-30:Jon",
    ]
    user = store.get_user(user_id=CAROLINE)
    assert user is not None and user.name == "Caroline"
    assert user.attributes == {"sample_id": "conv-26", "partner": "Melanie"}
    docs = store.get_documents(user_id=CAROLINE)
    assert [d.doc_id for d in docs] == ["D1:1", "D1:2", "D1:3", "D1:4", "D2:1", "D2:2"]  # session then turn order
    mine, partner = "message", "partner_message"
    assert [d.doc_kind for d in docs] == [mine, partner, mine, partner, partner, mine]
    session_1, session_2 = 1683554160, 1687862220  # 2023-05-08 13:56, 2023-06-27 10:37 UTC
    offsets = [(session_1, 0), (session_1, 1), (session_1, 2), (session_1, 3), (session_2, 0), (session_2, 1)]
    assert [d.timestamp for d in docs] == [start + turn for start, turn in offsets]  # session time + position
    assert docs[0].text == "Caroline: Hey Mel! I went to the LGBTQ support group yesterday and it was so powerful."
    assert docs[3].text == "Melanie: Here is my painting. [shares a photo of a painted sunrise]"
    assert docs[3].metadata["img_url"] == ["https://example.org/sunrise.jpg"]
    assert docs[0].metadata == {
        "sample_id": "conv-26",
        "session": 1,
        "speaker": "Caroline",
        "dia_id": "D1:1",
        "date_time": "1:56 pm on 8 May, 2023",
    }
    # Melanie's user holds the same conversation, her own turns as messages.
    theirs = store.get_documents(user_id=MELANIE)
    assert [(d.doc_id, d.text) for d in theirs] == [(d.doc_id, d.text) for d in docs]
    assert [d.doc_kind for d in theirs][:2] == ["partner_message", "message"]
    gina = store.get_documents(user_id="locomo:conv-30:Gina")
    assert gina[0].timestamp == 1674230640  # ISO "2023-01-20T16:04:00", as UTC


def test_questions_are_asked_for_the_speaker_they_are_about(store: Store, tmp_path: Path) -> None:
    load_dataset(store, "locomo", write_locomo(tmp_path / "locomo10.json"))
    examples = {e.example_id: e for e in store.get_examples(task="locomo-qa")}
    assert len(examples) == 9
    first = examples["conv-26:q0"]
    assert first.user_id == CAROLINE and first.input == "When did Caroline go to the LGBTQ support group?"
    assert first.target == "7 May 2023" and first.timestamp is None
    assert first.metadata == {
        "sample_id": "conv-26",
        "category": 2,
        "category_name": "temporal",
        "evidence": ["D1:1"],
        "split": "test",
    }
    assert examples["conv-26:q1"].user_id == MELANIE
    adversarial = examples["conv-26:q4"]
    assert adversarial.user_id == CAROLINE and adversarial.target == ABSTAIN_ANSWER
    assert adversarial.metadata["adversarial_answer"] == "a sunrise" and adversarial.metadata["category"] == 5
    assert examples["conv-26:q5"].metadata["evidence"] == []
    assert examples["conv-26:q6"].target == "2023"  # a number in the file
    assert examples["conv-30:q0"].metadata["evidence"] == ["D1:1", "D1:3"]  # "D1:1; D1:3"
    assert examples["conv-30:q0"].user_id == "locomo:conv-30:Jon"


def test_reload_changes_nothing_and_the_format_is_detected(store: Store, tmp_path: Path) -> None:
    path = write_locomo(tmp_path / "locomo10.json")
    assert detect_format(path) == "locomo"
    load_dataset(store, "locomo", path)
    again = load_dataset(store, "auto", path)
    assert again.source == "locomo" and not any(again.added.values())


def test_late_sessions_keep_their_date(store: Store, tmp_path: Path) -> None:
    """Turn offsets never push a turn into the next day: 70 turns at 11:59 pm stay on one date."""
    samples = locomo_samples()[:1]
    conv = samples[0]["conversation"]
    conv["session_2_date_time"] = "11:59 pm on 27 June, 2023"
    conv["session_2"] = [
        {"speaker": ("Caroline", "Melanie")[i % 2], "dia_id": f"D2:{i + 1}", "text": f"turn {i}"} for i in range(70)
    ]
    samples[0]["qa"] = []
    load_dataset(store, "locomo", write_locomo(tmp_path / "late.json", samples))
    late = [d.timestamp for d in store.get_documents(user_id=CAROLINE) if d.doc_id.startswith("D2:")]
    assert len(late) == 70 and max(late) == 1687910399  # 2023-06-27 23:59:59 UTC
    assert late == sorted(late)


def _broken(change: Any) -> list[dict[str, Any]]:
    samples = copy.deepcopy(locomo_samples())
    change(samples[1])
    return samples


def _set(path: list[Any], value: Any) -> Any:
    def change(sample: dict[str, Any]) -> None:
        target = sample
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


_DELETE = object()

BAD = [
    (_set(["conversation", "session_1_date_time"], "yesterday afternoon"), "conversation.session_1_date_time",
     "cannot read the date-time 'yesterday afternoon'"),
    (_set(["conversation", "session_1_date_time"], _DELETE), "conversation.session_1_date_time", "missing"),
    (_set(["conversation", "session_1", 1, "speaker"], "Bob"), "conversation.session_1[1].speaker",
     "must be one of the speakers ['Jon', 'Gina']"),
    (_set(["conversation", "session_1", 2, "dia_id"], "D1:1"), "conversation.session_1[2].dia_id",
     "dia_id 'D1:1' appears twice"),
    (_set(["qa", 1, "answer"], _DELETE), "qa[1].answer", "missing"),
    (_set(["qa", 0, "category"], "hard"), "qa[0].category", "must be a number"),
    (_set(["qa", 0, "evidence"], "D1:1"), "qa[0].evidence", "must be a list of dia_ids"),
    (_set(["conversation"], _DELETE), "conversation", "missing"),
    (_set(["conversation", "speaker_b"], "Jon"), "conversation.speaker_b", "both speakers are 'Jon'"),
    (_set(["sample_id"], "conv-26"), "sample_id", "sample_id 'conv-26' appears twice"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "message"),
    BAD,
    ids=["bad-date", "no-date", "stranger", "dia-twice", "no-answer", "bad-category", "evidence-string",
         "no-conversation", "one-speaker", "sample-twice"],
)  # fmt: skip
def test_bad_samples_name_sample_and_field_and_store_nothing(
    store: Store, tmp_path: Path, change: Any, field: str, message: str
) -> None:
    path = write_locomo(tmp_path / "bad.json", _broken(change))
    with pytest.raises(LoadError) as info:
        load_dataset(store, "locomo", path)
    err = info.value
    assert err.field == field and message in err.message
    assert "in sample[1]" in str(err) and str(err).startswith("bad.json:")
    if field != "sample_id":
        assert "(sample_id 'conv-30')" in str(err)
    assert not any(store.counts().values())  # all or nothing
    report = load_dataset(store, "locomo", path, skip_bad=True)  # the good sample still loads
    assert report.skipped == 1 and report.added["users"] == 2 and "in sample[1]" in report.errors[0]


def test_a_file_that_is_not_an_array_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps(locomo_samples()[0]))
    with pytest.raises(LoadError, match="expected a JSON array"):
        load_dataset(store, "locomo", path)


def test_cli_loads_a_locomo_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.cli import app

    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TAILORLM_STORE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    path = write_locomo(tmp_path / "locomo10.json")
    result = CliRunner().invoke(app, ["data", "load", str(path), "--format", "locomo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with Store(f"sqlite:///{tmp_path / 'cli.db'}") as s:
        docs = s.get_documents(user_id=CAROLINE)
    assert docs and all(isinstance(d, Document) for d in docs) and len(docs) == 6
