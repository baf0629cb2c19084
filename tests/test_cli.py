"""The ``tailorlm`` CLI end to end on a real SQLite store (Typer's runner, no subprocess)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailorlm import Store, load_settings
from tailorlm.cli import app

runner = CliRunner()


def _review(user: str, asin: str, rating: float, text: str, summary: str, ts: int) -> str:
    return json.dumps({"reviewerID": user, "asin": asin, "reviewerName": user, "helpful": [0, 0],
                       "reviewText": text, "overall": rating, "summary": summary,
                       "unixReviewTime": ts, "reviewTime": "01 1, 2014"})  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TAILORLM_STORE_URL", raising=False)
    lines = [_review(u, f"B{i}", 1 + (i % 5), f"{u} guitar strings review {i}", f"{u} title {i}", 1000 + i)
             for u in ("U1", "U2", "U3") for i in range(6)]  # fmt: skip
    path = tmp_path / "reviews.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    bad = tmp_path / "bad.json"
    bad.write_text("\n".join([*lines[:3], lines[3].replace('"overall": 4', '"overall": "four"'), *lines[4:6]]) + "\n")
    return tmp_path


def _invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def test_load_stats_export_delete(env: Path) -> None:
    r = _invoke("data", "load", str(env / "reviews.json.gz"))
    assert r.exit_code == 0, r.output
    assert "documents" in r.output and "18" in r.output
    counts = Store.from_settings(load_settings()).counts()
    assert _invoke("data", "load", str(env / "reviews.json.gz")).exit_code == 0
    assert Store.from_settings(load_settings()).counts() == counts  # loading again changes nothing
    stats = _invoke("data", "stats")
    assert "amazon-rating" in stats.output and "18" in stats.output
    out = env / "u1.json"
    assert _invoke("data", "export", "--user", "amazon:U1", "-o", str(out)).exit_code == 0
    export = json.loads(out.read_text())
    assert export["user"]["user_id"] == "amazon:U1" and len(export["documents"]) == 6
    r = _invoke("data", "delete-user", "--user", "amazon:U1", "--yes")
    assert r.exit_code == 0 and "deleted amazon:U1" in r.output
    assert _invoke("data", "export", "--user", "amazon:U1").exit_code == 1
    assert _invoke("data", "export", "--user", "amazon:U2").exit_code == 0  # untouched


def test_malformed_line_aborts_the_whole_load(env: Path) -> None:
    r = _invoke("data", "load", str(env / "bad.json"), "--format", "amazon")
    assert r.exit_code == 1
    assert "bad.json:4" in r.output and "overall" in r.output and "nothing was stored" in r.output
    assert Store.from_settings(load_settings()).counts()["documents"] == 0
    r = _invoke("data", "load", str(env / "bad.json"), "--format", "amazon", "--skip-bad")
    assert r.exit_code == 0 and "1 skipped" in r.output


def test_info_and_run_without_a_model(env: Path) -> None:
    _invoke("data", "load", str(env / "reviews.json.gz"))
    info = _invoke("info")
    assert "schema version" in info.output and "smollm2" in info.output
    # the sample has 3 users: a time split (their latest review each), since a user split of all
    # of them would leave no population to learn from
    r = _invoke("run", "--method", "rag-bm25", "--task", "amazon-rating", "--users", "3", "--split", "time",
                "--predictor", "retrieval-vote", "-o", str(env / "run.json"))  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads((env / "run.json").read_text())
    assert result["metrics"]["n"] == 3 and len(result["rows"]) == 3
    assert all(row["scope"] == "user" for row in result["rows"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data", "load", "/no/such/file"), "no such file"),
        (("data", "delete-user", "--user", "nobody", "--yes"), "unknown user"),
        (("run", "--method", "rag-bm42", "--task", "amazon-rating", "--predictor", "majority"), "unknown method"),
        (("run", "--method", "identity", "--task", "no-task", "--predictor", "majority"), "unknown task"),
        (("data", "fetch", "imagenet"), "unknown dataset"),
    ],
    ids=["missing-file", "unknown-user", "unknown-method", "unknown-task", "unknown-dataset"],
)
def test_bad_input_gets_a_clear_error(env: Path, args: tuple[str, ...], message: str) -> None:
    r = _invoke(*args)
    assert r.exit_code != 0
    assert message in r.output


def test_train_pairs_derives_preferences_from_other_users_earlier_titles(env: Path) -> None:
    assert _invoke("data", "load", str(env / "reviews.json.gz")).exit_code == 0
    r = _invoke("train", "pairs", "--task", "amazon-title", "--user", "amazon:U1")
    assert r.exit_code == 0, r.output
    store = Store.from_settings(load_settings())
    prefs = store.get_preferences(user_id="amazon:U1")
    assert prefs and all(p.source == "derived:other-user-title" for p in prefs)
    assert all("U1 title" in p.chosen for p in prefs)  # the user's own title is the chosen one
    assert all("U1" not in p.rejected for p in prefs)  # always another user's title
    again = _invoke("train", "pairs", "--task", "amazon-title", "--user", "amazon:U1")
    assert again.exit_code == 0 and len(store.get_preferences(user_id="amazon:U1")) == len(prefs)
    assert not store.get_preferences(user_id="amazon:U2")  # only the users asked for
