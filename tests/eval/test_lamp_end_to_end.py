"""LaMP end to end for all seven tasks: LaMP-format files -> load -> bench -> scores, with no leakage.

The files are written in the public layout (train and dev questions plus outputs, one
question per user, each with its own profile, one profile item with no indexable word).
A fake generator stands in for the model; one test at the end runs the real one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lamp_files import TAGS, write_lamp

from tailorlm.data import Store
from tailorlm.eval.bench import run_bench
from tailorlm.eval.suite import SuiteConfig
from tailorlm.personalize.lora.config import LoraTrainConfig
from tailorlm.personalize.lora.train import training_rows
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.settings import load_settings
from tailorlm.tasks import get_task
from tailorlm.testing import FakeGenerator


class ScoringEcho(FakeGenerator):
    """Echoes like FakeGenerator and scores choices deterministically from the prompt."""

    def score_choices(self, batch: Any, choices: Any, *, adapter: Any = None) -> np.ndarray:
        self.calls.append(None)  # type: ignore[arg-type]  # counted like a generation call
        text = [json.dumps(conv) for conv in batch]
        return np.asarray([[float(t.count(str(c))) for c in choices] for t in text])


def _rows(task: str) -> list[dict[str, Any]]:
    kind = get_task(task).kind
    if kind == "generation":
        return [
            {"task": task, "method": "identity", "predictor": "generate", "users": 50, "baseline": True},
            {"task": task, "method": "rag-bm25", "predictor": "generate", "users": 50, "k": 2},
        ]
    rows = [
        {"task": task, "method": "identity", "predictor": "majority", "users": 50, "baseline": True},
        {"task": task, "method": "rag-bm25", "predictor": "generate", "users": 50, "k": 2},
        {"task": task, "method": "rag-bm25", "predictor": "choice-calibrated", "users": 50, "k": 2},
        {"task": task, "method": "rag-bm25", "predictor": "retrieval-vote", "users": 50, "k": 2},
    ]
    if kind == "rating":
        rows.append({"task": task, "method": "identity", "predictor": "user-mean", "users": 50})
    return rows


def _conversations(fake: FakeGenerator) -> list[str]:
    return ["\n".join(m["content"] for m in conv) for call in fake.calls if call is not None for conv in call.batch]


@pytest.mark.parametrize("n", range(1, 8))
def test_lamp_task_loads_benches_and_scores_without_leakage(tmp_path: Path, n: int) -> None:
    task = f"lamp-{n}"
    write_lamp(tmp_path / "data", n, n_train=6, n_dev=4)
    suite = SuiteConfig.from_dict(
        {
            "name": f"lamp{n}",
            "meteor": False,
            "datasets": [{"format": "lamp", "path": f"LaMP_{n}"}],
            "rows": _rows(task),
        }
    )
    fake = ScoringEcho()
    settings = load_settings(cache_dir=tmp_path / "cache")
    files = run_bench(
        suite, settings=settings, out_dir=tmp_path / "out", data_dir=tmp_path / "data",
        generator_factory=lambda: fake, model_fingerprint="fake", log=lambda _: None,
    )  # fmt: skip
    report = json.loads(files["json"].read_text())
    results = report["results"]
    assert all(not r.get("skipped") for r in results), [r.get("skipped") for r in results]
    metric = {"rating": "mae", "classification": "accuracy", "generation": "rouge1"}[get_task(task).kind]
    dev_ids = {str(i) for i in range(6, 10)}
    for r in results:
        assert r["split"]["kind"] == "given"
        assert {q[1] for q in r["split"]["queries"]} == dev_ids  # every dev question, its own user
        assert set(r["split"]["population"]) == {f"lamp{n}:{i}" for i in range(6)}  # the train questions' users
        assert metric in r["metrics"] and metric in r["ci"]
        assert r["metrics"].get("n", len(r["rows"])) == 4
        if not r["baseline"]:
            assert r["paired"]["n"] == 4
    rag_rows = [row for r in results if r["method"] == "rag-bm25" for row in r["rows"]]
    for row in rag_rows:  # retrieval stayed inside each question's own profile
        assert all(re.fullmatch(rf"doc:{row['example_id']}-\d", rid) for rid in row["retrieved"]), row

    # What the model saw: each prompt shows its own question's profile only, never a gold output.
    texts = _conversations(fake)
    assert sum(bool(re.search(r"\bpq\d+x\b", t)) for t in texts) >= 4  # the profiles did reach prompts
    if n == 2:  # the profile's tags reach the prompt, in the LaMP paper's format
        assert any(
            re.search(r'the tag for the movie: "pq\d+x[^"]*" is "(sci-fi|comedy|romance|action)"', t) for t in texts
        )
    for text in texts:
        assert "gold" not in text
        own = set(re.findall(r"\bQ(\d+)\b", text))
        shown = set(re.findall(r"\bpq(\d+)x\b", text))
        assert len(own) <= 1 and (shown <= own if own else len(shown) <= 1), text

    # What a global adapter would learn from: train questions only, never a dev question or gold.
    store = Store(f"sqlite:///{tmp_path / 'cache' / 'bench' / suite.name / 'store.db'}")
    try:
        population = results[0]["split"]["population"]
        ctx = TrainContext(store=store, registry=None, generator=None, users=population)  # type: ignore[arg-type]
        rows, _ = training_rows(TrainJob("lora", "global", "", task, {}), ctx, LoraTrainConfig())
        seen = {r.example_id for r in rows}
        assert seen == {str(i) for i in range(6)} and not seen & dev_ids
    finally:
        store.close()


def test_real_model_scores_a_lamp2_row(smollm: Any, tmp_path: Path) -> None:
    """The real model on LaMP-2: labels read from each question, calibrated choice among them."""
    from tailorlm.data.loaders import load_dataset
    from tailorlm.eval import run_method

    store = Store("sqlite://")
    load_dataset(store, "lamp", write_lamp(tmp_path, 2, n_train=4, n_dev=3))
    res = run_method(store, method="rag-bm25", task="lamp-2", predictor="choice-calibrated", generator=smollm, k=2)
    assert res.split["kind"] == "given" and len(res.rows) == 3

    assert all(row["answer"] in TAGS for row in res.rows)
    assert all(row["retrieved"] for row in res.rows)  # each question's own profile reached the prompt
    assert 0.0 <= res.metrics["accuracy"] <= 1.0 and "macro_f1" in res.metrics
