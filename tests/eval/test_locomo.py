"""LoCoMo memory QA end to end: a LoCoMo-layout file -> load -> bench -> F1, evidence recall@k and
the judge, per category with CIs; and the same from ``tailorlm bench --suite locomo``.

A scripted fake model stands in for the LLM: it answers some questions right, one wrong,
abstains on the adversarial one, and as a judge says "yes" exactly when the given answer
is the correct one, so every number below can be worked out by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from locomo_samples import write_locomo
from tailorlm.eval.bench import run_bench
from tailorlm.eval.metrics import token_f1
from tailorlm.eval.suite import SuiteConfig, load_suite
from tailorlm.models.base import GenerationConfig
from tailorlm.settings import load_settings
from tailorlm.testing import FakeGenerator

# question -> what the scripted model answers (the rest get "I do not know")
ANSWERS = {
    "When did Caroline go to the LGBTQ support group?": "7 May 2023",  # right: F1 1
    "What did Melanie paint?": "a sunrise painting",  # F1 2*(1/2*1)/(1.5) = 2/3 (article dropped)
    "What is Caroline researching?": "adoption agencies",  # right
    "Where did Melanie take her kids camping?": "to the lake",  # wrong: F1 0
    "What did Caroline paint by the lake?": "Not mentioned in the conversation",  # abstains: 1
    "In which year did Melanie paint the sunrise?": "2023",  # right
    "What store did Gina start?": "a clothing store",  # right
}
GRADE = re.compile(r"Correct answer: (.*)\nGiven answer: (.*)\n")


class ScriptedModel(FakeGenerator):
    """Answers from ANSWERS; as the correctness judge, "yes" iff the given answer is the correct one."""

    def _answer(self, conv: list[dict[str, str]], config: GenerationConfig, adapter: str | None) -> str:
        last = conv[-1]["content"]
        if m := GRADE.search(last):
            return "yes" if m.group(1).strip() == m.group(2).strip() else "no"
        question = last.rsplit("Question: ", 1)[-1].strip()
        return ANSWERS.get(question, "I do not know")


class BowEmbedder:
    """Bag of words hashed into 32 buckets, L2-normalized: a dense retriever without a model."""

    name, version, dim = "fake-bow", "1", 32

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


ROWS = [
    {"task": "locomo-qa", "method": "identity", "predictor": "generate", "users": 50, "baseline": True},
    {"task": "locomo-qa", "method": "rag-bm25", "predictor": "generate", "users": 50, "k": 1},
    {"task": "locomo-qa", "method": "recency", "predictor": "generate", "users": 50, "k": 20},
]


@pytest.fixture
def report(tmp_path: Path) -> tuple[dict[str, Any], ScriptedModel, Path]:
    write_locomo(tmp_path / "data" / "locomo10.json")
    suite = SuiteConfig.from_dict(
        {"name": "locomo-test", "meteor": False, "datasets": [{"format": "locomo", "path": "locomo10.json"}],
         "rows": ROWS}
    )  # fmt: skip
    model = ScriptedModel()
    files = run_bench(
        suite, settings=load_settings(cache_dir=tmp_path / "cache"), out_dir=tmp_path / "out",
        data_dir=tmp_path / "data", generator_factory=lambda: model, model_fingerprint="scripted",
        log=lambda _: None,
    )  # fmt: skip
    return json.loads(files["json"].read_text()), model, files["markdown"]


def _by_question(result: dict[str, Any], metric: str) -> dict[str, Any]:
    return {row["example_id"]: v for row, v in zip(result["rows"], result["per_example"][metric], strict=True)}


def test_every_question_is_asked_for_its_user_and_scored(report: tuple[dict[str, Any], ScriptedModel, Path]) -> None:
    rep, _, _ = report
    identity, bm25, recency = rep["results"]
    assert all(not r.get("skipped") for r in rep["results"])
    for r in (identity, bm25, recency):
        assert r["split"]["kind"] == "given" and len(r["rows"]) == 9  # every question, each its own query
        assert {row["user_id"] for row in r["rows"] if row["example_id"] == "conv-26:q1"} == {"locomo:conv-26:Melanie"}
    f1 = _by_question(identity, "f1")
    assert f1["conv-26:q0"] == 1.0 and f1["conv-26:q3"] == 0.0 and f1["conv-26:q4"] == 1.0  # q4: abstained
    assert f1["conv-26:q1"] == pytest.approx(2 / 3)  # "a sunrise painting" vs "a sunrise"
    assert f1["conv-26:q5"] == token_f1("I do not know", "Likely yes") == 0.0
    # The scripted judge says yes exactly where the answer is the reference word for word (the
    # abstention included: its reference is "Not mentioned in the conversation").
    judge = _by_question(identity, "judge")
    assert judge == {k: float(v == 1.0) for k, v in f1.items()}
    assert identity["metrics"]["f1"] == pytest.approx(np.mean(list(f1.values())))


def test_evidence_recall_comes_from_the_retrieved_ids(report: tuple[dict[str, Any], ScriptedModel, Path]) -> None:
    rep, _, _ = report
    identity, bm25, recency = rep["results"]
    # No retrieval: nothing of the evidence was in the prompt; the question without evidence has no value.
    recall = _by_question(identity, "evidence_recall")
    assert recall["conv-26:q5"] is None and {v for k, v in recall.items() if k != "conv-26:q5"} == {0.0}
    # Recency with k=20 puts every turn (6 per user at most) in the prompt: all evidence is there.
    assert {v for v in _by_question(recency, "evidence_recall").values() if v is not None} == {1.0}
    # BM25 with k=1: recall is |evidence & the one retrieved id| / |evidence|, from the rows' ids.
    for row, value in zip(bm25["rows"], bm25["per_example"]["evidence_recall"], strict=True):
        assert len(row["retrieved"]) <= 1
        evidence = {"conv-26:q1": ["D1:2", "D1:4"], "conv-30:q0": ["D1:1", "D1:3"], "conv-26:q5": []}.get(
            row["example_id"]
        )
        if evidence is not None:
            got = {i.removeprefix("doc:") for i in row["retrieved"]}
            assert value == (len(set(evidence) & got) / len(evidence) if evidence else None)
    bm = _by_question(bm25, "evidence_recall")
    assert bm["conv-26:q2"] == 1.0  # "researching" is in D1:3 alone
    assert bm["conv-26:q3"] == 1.0  # "camping" is in D2:1 alone
    assert bm["conv-26:q1"] in (0.0, 0.5)  # k=1 holds one of its two evidence turns at most
    assert identity["metrics"]["evidence_n"] == 8
    assert recency["ci"]["evidence_recall"] == {"estimate": 1.0, "low": 1.0, "high": 1.0, "level": 0.95}


def test_per_category_cis_and_the_report(report: tuple[dict[str, Any], ScriptedModel, Path]) -> None:
    rep, _, markdown = report
    identity = rep["results"][0]
    cats = identity["ci_by_category"]
    assert list(cats) == ["1 multi-hop", "2 temporal", "3 open-domain", "4 single-hop", "5 adversarial"]
    assert {c: v["n"] for c, v in cats.items()} == {
        "1 multi-hop": 2, "2 temporal": 2, "3 open-domain": 1, "4 single-hop": 3, "5 adversarial": 1,
    }  # fmt: skip
    # single-hop: q1 (2/3), q2 (1), Gina's store (1) -> 8/9; multi-hop: the beach (0), Jon's studio (0).
    assert cats["4 single-hop"]["ci"]["f1"]["estimate"] == pytest.approx(8 / 9)
    assert cats["1 multi-hop"]["ci"]["f1"]["estimate"] == 0.0
    assert cats["2 temporal"]["ci"]["f1"] == {"estimate": 1.0, "low": 1.0, "high": 1.0, "level": 0.95, "n": 2}
    assert cats["5 adversarial"]["ci"]["f1"]["estimate"] == 1.0
    assert "evidence_recall" not in cats["3 open-domain"]["ci"]  # its one question has no evidence
    low, high = cats["4 single-hop"]["ci"]["f1"]["low"], cats["4 single-hop"]["ci"]["f1"]["high"]
    assert low <= 8 / 9 <= high
    assert set(identity["ci"]) == {"f1", "evidence_recall", "judge"}
    assert rep["results"][1]["paired"]["tests"]["f1"]["n"] == 9  # paired against the baseline
    text = markdown.read_text()
    assert "#### locomo-qa by question category" in text
    assert "| identity / generate | 4 single-hop | 3 | 0.889 [" in text


def test_context_lines_carry_their_date(report: tuple[dict[str, Any], ScriptedModel, Path]) -> None:
    """The prompts the model saw: every retrieved turn shows its session's date and speaker."""
    _, model, _ = report
    systems = [conv[0]["content"] for call in model.calls for conv in call.batch]
    assert any("1. [2023-05-08] Caroline: I love that. I am researching adoption agencies now." in s for s in systems)
    assert any("[2023-06-27] Melanie: I took my kids camping at the beach last weekend." in s for s in systems)
    assert any("[2023-01-20] Gina: Wow! I lost my job too" in s for s in systems)


def test_the_packaged_suite_runs_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tailorlm bench --suite locomo --data-dir DIR`` on a user's own file (the models stubbed)."""
    from tailorlm.cli import app

    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setattr("tailorlm.models.build_generator", lambda settings: ScriptedModel())
    monkeypatch.setattr("tailorlm.models.build_embedder", lambda settings: BowEmbedder())
    write_locomo(tmp_path / "mine" / "locomo10.json")
    out = tmp_path / "results"
    args = ["bench", "--suite", "locomo", "--data-dir", str(tmp_path / "mine"), "--out", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "results.json").read_text())
    suite = load_suite("locomo")
    assert [r["name"] for r in rep["results"]] == [r.name for r in suite.rows]
    assert all(not r.get("skipped") and len(r["rows"]) == 9 for r in rep["results"])
    assert all(set(r["ci"]) == {"f1", "evidence_recall", "judge"} and r["ci_by_category"] for r in rep["results"])
    assert "locomo-qa by question category" in (out / "results.md").read_text()


def test_without_the_file_the_rows_are_skipped(tmp_path: Path) -> None:
    files = run_bench(
        load_suite("locomo"), settings=load_settings(cache_dir=tmp_path / "cache"), out_dir=tmp_path / "out",
        data_dir=tmp_path / "empty", generator_factory=ScriptedModel, model_fingerprint="scripted",
        embedder_factory=BowEmbedder, embedder_fingerprint="bow", log=lambda _: None,
    )  # fmt: skip
    rep = json.loads(files["json"].read_text())
    assert rep["datasets"][0]["loaded"] is False
    assert all("dataset not loaded" in r["skipped"] for r in rep["results"])


def test_tailorlm_run_prints_the_categories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tailorlm data load`` then ``tailorlm run --task locomo-qa``: the same scores, per category."""
    from tailorlm.cli import app

    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TAILORLM_STORE_URL", raising=False)
    monkeypatch.setattr("tailorlm.models.build_generator", lambda settings: ScriptedModel())
    runner = CliRunner()
    path = write_locomo(tmp_path / "locomo10.json")
    assert runner.invoke(app, ["data", "load", str(path)], catch_exceptions=False).exit_code == 0  # detected
    out = tmp_path / "run.json"
    args = ["run", "--task", "locomo-qa", "--method", "rag-bm25", "--k", "1", "--predictor", "generate",
            "--users", "9", "-o", str(out)]  # fmt: skip
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "by question category" in result.output and "4 single-hop" in result.output
    saved = json.loads(out.read_text())
    assert saved["ci_by_category"]["4 single-hop"]["ci"]["f1"]["estimate"] == pytest.approx(8 / 9)
