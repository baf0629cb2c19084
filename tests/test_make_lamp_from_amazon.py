"""benchmarks/make_lamp_from_amazon.py on a tiny synthetic review file (never the shared data).

The expected questions are computed here independently of the script (latest review per user,
profile = strictly earlier days), so a leak of the target or a same-day review into a profile,
a user in both splits, or a wrong gold shows up as a mismatch. The produced LaMP_3 folder is
then loaded with the project's own LaMP loader, as the harness would.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tailorlm.data import Store
from tailorlm.data.loaders import LoadError, load_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_lamp_from_amazon.py"
DAY = 86_400
T0 = 1_300_000_000 - 1_300_000_000 % DAY  # Amazon times are midnights UTC


def _load_script() -> ModuleType:
    """The script is not a package module: load it by path, registered so dataclasses resolve."""
    spec = importlib.util.spec_from_file_location("make_lamp_from_amazon", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


mk = _load_script()


def _review(user: str, asin: str, day: int, stars: float, *, text: str | None = None) -> dict[str, Any]:
    return {
        "reviewerID": user,
        "asin": asin,
        "reviewerName": "someone",
        "helpful": [0, 0],
        "reviewText": f"{user} on {asin}: review text of day {day}" if text is None else text,
        "overall": stars,
        "summary": f"title {user} {asin}",
        "unixReviewTime": T0 + day * DAY,
        "reviewTime": "ignored",
    }


def _reviews() -> list[dict[str, Any]]:
    """Twelve regular users plus edge cases, in a shuffled-looking file order."""
    rows = []
    for u in range(12):
        for j in range(4 + u % 3):  # 4..6 reviews on distinct days
            rows.append(_review(f"U{u:02d}", f"B{(u * 7 + j) % 40:03d}", day=10 * j + u, stars=float(1 + (u + j) % 5)))
    # TIE: latest day has two reviews; the larger asin is the target, the other is in neither.
    rows += [_review("TIE", f"A{i}", day=i, stars=4.0) for i in range(3)]
    rows += [_review("TIE", "Z9", day=50, stars=2.0), _review("TIE", "Z1", day=50, stars=5.0)]
    # SHORT: only 2 earlier reviews, below --min-profile 3.
    rows += [_review("SHORT", f"S{i}", day=i, stars=3.0) for i in range(3)]
    # EMPTY: an empty review text is dropped, so it is neither target nor profile.
    rows += [_review("EMPTY", f"E{i}", day=i, stars=5.0) for i in range(4)]
    rows.append(_review("EMPTY", "E9", day=99, stars=1.0, text="   "))
    return rows[::-1]


def _write_gz(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return _write_gz(tmp_path / "data" / mk.SUBDIR / mk.FILENAME, _reviews())


def _expected(rows: list[dict[str, Any]], min_profile: int = 3) -> dict[str, tuple[dict, list[dict]]]:
    """user -> (target row, profile rows oldest first), computed without the script."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["reviewText"].strip() and r["summary"].strip():
            by_user[r["reviewerID"]].append(r)
    out = {}
    for user, rs in by_user.items():
        target = max(rs, key=lambda r: (r["unixReviewTime"], r["asin"]))
        profile = sorted(
            (r for r in rs if r["unixReviewTime"] < target["unixReviewTime"]),
            key=lambda r: (r["unixReviewTime"], r["asin"]),
        )
        if len(profile) >= min_profile:
            out[user] = (target, profile)
    return out


def _read(folder: Path, split: str) -> tuple[list[dict], dict]:
    qs = json.loads((folder / f"{split}_questions.json").read_text(encoding="utf-8"))
    outs = json.loads((folder / f"{split}_outputs.json").read_text(encoding="utf-8"))
    return qs, outs


def _question_user(q: dict) -> str:
    users = {p["id"].rsplit("-", 1)[0] for p in q["profile"]}
    assert len(users) == 1, users
    return users.pop()


def test_layout_split_profiles_and_golds(src: Path, tmp_path: Path) -> None:
    conv = mk.convert(src, tmp_path / "out", seed=0, dev_fraction=0.3, min_profile=3)
    expected = _expected(_reviews())
    assert set(expected) == {f"U{u:02d}" for u in range(12)} | {"TIE", "EMPTY"}
    train_users, dev_users = {q.user for q in conv.train}, {q.user for q in conv.dev}
    assert not train_users & dev_users
    assert train_users | dev_users == set(expected)
    assert len(dev_users) == round(len(expected) * 0.3)
    for task, label in (("3", "score"), ("4", "title")):
        folder = tmp_path / "out" / f"LaMP_{task}"
        assert sorted(p.name for p in folder.iterdir()) == [
            "dev_outputs.json",
            "dev_questions.json",
            "train_outputs.json",
            "train_questions.json",
        ]
        seen_ids: set[str] = set()
        for split, users in (("train", train_users), ("dev", dev_users)):
            qs, outs = _read(folder, split)
            assert outs["task"] == f"LaMP_{task}"
            assert [g["id"] for g in outs["golds"]] == [q["id"] for q in qs]
            golds = {g["id"]: g["output"] for g in outs["golds"]}
            assert {_question_user(q) for q in qs} == users
            for q in qs:
                assert set(q) == {"id", "input", "profile"} and isinstance(q["id"], str)
                assert q["id"] not in seen_ids
                seen_ids.add(q["id"])
                target, profile = expected[_question_user(q)]
                assert q["input"] == mk.PROMPTS[task].format(text=target["reviewText"])
                assert golds[q["id"]] == (str(int(target["overall"])) if task == "3" else target["summary"])
                assert [p["id"] for p in q["profile"]] == [f"{r['reviewerID']}-{r['asin']}" for r in profile]
                assert f"{target['reviewerID']}-{target['asin']}" not in {p["id"] for p in q["profile"]}
                target_date = mk.Review("", "", "", "", 1, target["unixReviewTime"]).date
                for p, r in zip(q["profile"], profile, strict=True):
                    assert list(p) == ["id", "text", label, "date"]
                    assert p["date"] < target_date  # strictly earlier day
                    assert p["text"] == r["reviewText"]
                    assert p[label] == (str(int(r["overall"])) if task == "3" else r["summary"])


def test_same_day_reviews_and_empty_texts_never_reach_a_profile(src: Path, tmp_path: Path) -> None:
    conv = mk.convert(src, tmp_path / "out", min_profile=3)
    by_user = {q.user: q for q in conv.train + conv.dev}
    tie = by_user["TIE"]
    assert tie.target.asin == "Z9"  # same day: ties broken by asin
    assert [r.asin for r in tie.profile] == ["A0", "A1", "A2"]  # the same-day Z1 is left out
    empty = by_user["EMPTY"]
    assert empty.target.asin == "E3" and [r.asin for r in empty.profile] == ["E0", "E1", "E2"]
    assert "SHORT" not in by_user
    assert conv.counts["dropped_empty"] == 1 and conv.counts["lines"] == len(_reviews())
    for q in by_user.values():
        assert all(r.time < q.target.time for r in q.profile)


def test_same_arguments_give_identical_bytes(src: Path, tmp_path: Path) -> None:
    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.json"))}

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    mk.convert(src, a, seed=0)
    mk.convert(src, b, seed=0)
    assert files(a) == files(b) and len(files(a)) == 8
    shuffled = _write_gz(tmp_path / "shuffled.json.gz", sorted(_reviews(), key=lambda r: (r["asin"], r["reviewerID"])))
    mk.convert(shuffled, c, seed=0)
    assert files(c) == files(a)  # line order of the input does not matter
    split0 = {q.user for q in mk.build(mk.read_reviews(src)[0], seed=0).dev}
    split1 = {q.user for q in mk.build(mk.read_reviews(src)[0], seed=1).dev}
    assert split0 != split1  # the seed does move users


def test_max_users_samples_users_and_options_are_checked(src: Path) -> None:
    reviews, _ = mk.read_reviews(src)
    conv = mk.build(reviews, max_users=5, dev_fraction=0.3)
    assert len(conv.train) == 3 and len(conv.dev) == 2  # round(1.5) == 2
    assert [q.qid for q in conv.train + conv.dev] == ["0", "1", "2", "3", "4"]
    assert len(mk.build(reviews, dev_fraction=0.01).dev) == 1  # never an empty dev file
    assert len(mk.build(reviews, dev_fraction=0.0).dev) == 0
    with pytest.raises(ValueError, match="dev fraction"):
        mk.build(reviews, dev_fraction=1.5)
    with pytest.raises(ValueError, match="max users"):
        mk.build(reviews, max_users=0)


def test_broken_lines_name_the_line(tmp_path: Path) -> None:
    bad = dict(_review("U", "A", day=0, stars=4.5))
    path = _write_gz(tmp_path / "bad.json.gz", [_review("U", "B", day=1, stars=4.0), bad])
    with pytest.raises(ValueError, match=r"bad\.json\.gz:2: 'overall' must be a whole star rating"):
        mk.read_reviews(path)
    missing = {k: v for k, v in _review("U", "A", day=0, stars=4.0).items() if k != "summary"}
    with pytest.raises(ValueError, match=r":1: missing field\(s\) summary"):
        mk.read_reviews(_write_gz(tmp_path / "missing.json.gz", [missing]))


def test_html_entities_are_unescaped_like_the_loader(tmp_path: Path) -> None:
    """The dumps write quotes as ``&#34;``: LaMP inputs, profiles and golds get the plain text."""
    rows = [_review("ENT", f"A{i}", day=i, stars=4.0, text=f"the &#34;tone&#34; &amp; feel #{i}") for i in range(4)]
    for r in rows:
        r["summary"] = "Rock &amp; roll &quot;yes&quot;"
    rows.append(_review("ENT", "A9", day=9, stars=4.0, text="&nbsp;"))  # blank once unescaped: dropped
    src = _write_gz(tmp_path / "ent.json.gz", rows)
    conv = mk.convert(src, tmp_path / "out", dev_fraction=0.0, min_profile=3)
    assert conv.counts["dropped_empty"] == 1
    (q,) = conv.train
    assert (q.target.text, q.target.summary) == ('the "tone" & feel #3', 'Rock & roll "yes"')
    qs, outs = _read(tmp_path / "out" / "LaMP_4", "train")
    assert qs[0]["input"] == mk.PROMPTS["4"].format(text='the "tone" & feel #3')
    assert [p["title"] for p in qs[0]["profile"]] == ['Rock & roll "yes"'] * 3
    assert outs["golds"][0]["output"] == 'Rock & roll "yes"'
    raw = (tmp_path / "out" / "LaMP_4" / "train_questions.json").read_text(encoding="utf-8")
    assert "&#34;" not in raw and "&amp;" not in raw and "&quot;" not in raw
    # the same text as the project's Amazon loader puts into the store
    store = Store("sqlite://")
    try:
        load_dataset(store, "amazon", src)
        docs = {d.doc_id: d for d in store.get_documents(user_id="amazon:ENT")}
        assert [(docs[f"review:{r.asin}"].text, docs[f"review:{r.asin}"].title) for r in q.profile] == [
            (r.text, r.summary) for r in q.profile
        ]
    finally:
        store.close()


def test_cli_prints_counts_and_fails_clearly_without_data(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert mk.main(["--data-dir", str(tmp_path / "data"), "--out", str(out), "--max-users", "4"]) == 0
    printed = capsys.readouterr().out
    assert "train_questions: 3" in printed and "dev_questions: 1" in printed
    assert (out / "LaMP_4" / "dev_questions.json").is_file()
    assert mk.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "Amazon reviews not found" in err and mk.FILENAME in err
    assert not (tmp_path / "x").exists()
    inside = mk.REPO / "benchmarks" / "results" / "lamp-never-written"
    assert mk.main(["--data-dir", str(tmp_path / "data"), "--out", str(inside)]) == 2
    assert "not git-ignored" in capsys.readouterr().err and not inside.exists()


def _load_lamp(store: Store, folder: Path) -> bool:
    """Load a LaMP folder: whole (train + dev) where the loader supports it, else file by file.

    Returns whether the folder loaded whole, in which case examples carry ``metadata["split"]``.
    """
    try:
        load_dataset(store, "lamp", folder)
        return True
    except LoadError:  # a loader that takes exactly one questions file per folder
        for split in ("train", "dev"):
            load_dataset(store, "lamp", folder / f"{split}_questions.json")
        return False


def test_lamp3_folder_loads_with_the_project_loader(src: Path, tmp_path: Path) -> None:
    mk.convert(src, tmp_path / "out")
    folder = tmp_path / "out" / "LaMP_3"
    store = Store("sqlite://")
    try:
        whole = _load_lamp(store, folder)
        by_split = {split: _read(folder, split) for split in ("train", "dev")}
        golds = {g["id"]: g["output"] for _, outs in by_split.values() for g in outs["golds"]}
        examples = store.get_examples(task="lamp-3")
        assert {e.example_id: e.target for e in examples} == golds
        assert set(golds.values()) <= {"1", "2", "3", "4", "5"}
        questions = {q["id"]: q for qs, _ in by_split.values() for q in qs}
        split_of = {q["id"]: split for split, (qs, _) in by_split.items() for q in qs}
        for e in examples:
            q = questions[e.example_id]
            assert e.input == q["input"]
            assert e.metadata["profile_ids"] == [p["id"] for p in q["profile"]]
            if whole and "split" in e.metadata:
                assert e.metadata["split"] == split_of[e.example_id]
            docs = {d.doc_id: d for d in store.get_documents(user_id=e.user_id)}
            for p in q["profile"]:
                assert docs[p["id"]].rating == float(p["score"]) and docs[p["id"]].text == p["text"]
    finally:
        store.close()
