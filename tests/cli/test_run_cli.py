"""``tailorlm run``: the split is checked before any model loads, CIs and a paired test are printed.

No real model is loaded: the predictors are model-free (majority, retrieval-vote), and
``build_generator`` is replaced by one that raises, so "exits before loading" is proven
by the command ending with exit code 2 instead of that exception.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailorlm.cli import app

runner = CliRunner()
N_USERS = 10


class ModelLoaded(Exception):
    """Raised by the patched model builders: the command tried to load a model."""


def _review(user: str, asin: str, rating: float, ts: int) -> str:
    record = {"reviewerID": user, "asin": asin, "reviewerName": user, "helpful": [0, 0], "overall": rating,
              "reviewText": f"{user} guitar strings review {asin}", "summary": f"{user} title {asin}",
              "unixReviewTime": ts, "reviewTime": "01 1, 2014"}  # fmt: skip
    return json.dumps(record)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store of 10 users x 5 reviews (varied ratings) and model builders that refuse to load."""
    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TAILORLM_STORE_URL", raising=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise ModelLoaded("a model was loaded")

    monkeypatch.setattr("tailorlm.models.build_generator", refuse)
    monkeypatch.setattr("tailorlm.models.build_embedder", refuse)
    lines = [_review(f"U{u}", f"B{i}", 1 + (u * 3 + i * 2) % 5, 1000 + i) for u in range(N_USERS) for i in range(5)]
    with gzip.open(tmp_path / "reviews.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return tmp_path


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _load(env: Path) -> None:
    r = _invoke("data", "load", str(env / "reviews.json.gz"))
    assert r.exit_code == 0, r.output


def test_run_prints_bootstrap_cis_and_writes_them(env: Path) -> None:
    _load(env)
    out = env / "run.json"
    r = _invoke("run", "--method", "rag-bm25", "--task", "amazon-rating", "--users", "4",
                "--predictor", "retrieval-vote", "-o", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "95% CI" in r.output
    result = json.loads(out.read_text())
    assert result["split"]["kind"] == "user" and len(result["rows"]) == 4  # auto -> user (no given split)
    assert set(result["ci"]) == {"mae", "rmse"}  # the rating task's primary metrics
    for metric, ci in result["ci"].items():
        assert ci["estimate"] == pytest.approx(result["metrics"][metric])
        assert ci["low"] <= ci["estimate"] <= ci["high"] and ci["level"] == 0.95
        assert f"[{ci['low']:.4f}, {ci['high']:.4f}]" in r.output  # the CI is printed, not only saved
    assert "paired" not in result  # no baseline, no test


def test_run_with_a_baseline_prints_a_paired_test_on_the_same_queries(env: Path) -> None:
    _load(env)
    out = env / "run.json"
    r = _invoke("run", "--method", "rag-bm25", "--task", "amazon-rating", "--users", "5",
                "--predictor", "retrieval-vote", "--baseline", "identity", "--baseline-predictor", "majority",
                "-o", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "paired test" in r.output and "p-value" in r.output and "identity / majority" in r.output
    result = json.loads(out.read_text())
    base, comparison = result["baseline"], result["paired"]
    assert base["predictor"] == "majority" and base["split"]["queries"] == result["split"]["queries"]
    assert comparison["baseline"] == "identity / majority" and comparison["n"] == 5
    assert set(comparison["tests"]) == {"mae", "rmse"}
    for metric, test in comparison["tests"].items():
        assert test["difference"] == pytest.approx(result["metrics"][metric] - base["metrics"][metric])
        assert test["low"] <= test["difference"] <= test["high"] and 0 < test["p_value"] <= 1
        assert f"{test['p_value']:.4f}" in r.output
    assert set(base["ci"]) == {"mae", "rmse"}


def test_the_baseline_predictor_defaults_to_the_predictor(env: Path) -> None:
    _load(env)
    out = env / "run.json"
    r = _invoke("run", "--method", "identity", "--task", "amazon-rating", "--users", "3", "--predictor", "majority",
                "--baseline", "identity", "-o", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["baseline"]["predictor"] == "majority"
    # the same method and predictor on the same queries: no difference at all
    assert all(t["difference"] == 0 and t["p_value"] == 1 for t in result["paired"]["tests"].values())


def test_a_model_predictor_does_load_the_model(env: Path) -> None:
    """Control: the patched builder is the one the command uses, so the exits below prove something."""
    _load(env)
    with pytest.raises(ModelLoaded):
        _invoke("run", "--method", "identity", "--task", "amazon-rating", "--users", "3", "--predictor", "auto")


def test_more_users_than_the_task_has_exits_2_before_loading_a_model(env: Path) -> None:
    _load(env)
    r = _invoke("run", "--method", "identity", "--task", "amazon-rating", "--users", "100", "--predictor", "auto")
    assert r.exit_code == 2
    assert "leaving no population to fit on" in r.output and f"at most {N_USERS - 1} users" in r.output
    assert "MajorityPredictor" not in r.output


def test_a_task_without_examples_exits_2_before_loading_a_model(env: Path) -> None:
    _load(env)  # amazon reviews: no POPQUORN examples
    r = _invoke("run", "--method", "identity", "--task", "popquorn-offensiveness", "--predictor", "auto")
    assert r.exit_code == 2
    assert "no examples of task 'popquorn-offensiveness'" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--split", "random"), "split must be one of"),
        (("--predictor", "oracle"), "unknown predictor 'oracle'"),
        (("--baseline-predictor", "oracle"), "unknown predictor 'oracle'"),
        (("--baseline", "rag-bm42"), "unknown method"),
        (("--split", "given"), "no dev or test examples"),
    ],
    ids=["split", "predictor", "baseline-predictor", "baseline-method", "no-given-split"],
)
def test_bad_options_exit_2_before_loading_a_model(env: Path, args: tuple[str, ...], message: str) -> None:
    _load(env)
    r = _invoke("run", "--method", "identity", "--task", "amazon-rating", "--users", "3", *args)
    assert r.exit_code == 2
    assert message in r.output


def test_fewer_eligible_queries_than_asked_is_said(env: Path) -> None:
    """The time split keeps every user in the population, so 100 users is possible but only 10 are evaluated."""
    _load(env)
    out = env / "run.json"
    r = _invoke("run", "--method", "identity", "--task", "amazon-rating", "--users", "100", "--split", "time",
                "--predictor", "majority", "-o", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"only {N_USERS} queries" in r.output
    assert len(json.loads(out.read_text())["rows"]) == N_USERS


def test_a_lamp_folder_loads_and_runs_with_the_published_split(env: Path) -> None:
    """The researcher's path: `data load LaMP_3`, then `run --task lamp-3` (it used to stop with
    'no user of task lamp-3 has more than 1 examples')."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "eval"))
    from lamp_files import write_lamp

    folder = write_lamp(env / "lamp", 3, n_train=8, n_dev=5)
    r = _invoke("data", "load", str(folder), "--format", "lamp")
    assert r.exit_code == 0, r.output
    out = env / "lamp3.json"
    r = _invoke("run", "--method", "rag-bm25", "--task", "lamp-3", "--predictor", "retrieval-vote",
                "--baseline", "identity", "--baseline-predictor", "global-text", "-o", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["split"]["kind"] == "given" and len(result["rows"]) == 5
    assert {"mae", "rmse"} <= set(result["ci"]) and result["paired"]["n"] == 5
