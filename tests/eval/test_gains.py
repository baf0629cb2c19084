"""The personalization gain table: rows chosen on validation, gains tested on test queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tailorlm.eval.gains import is_personalized, markdown_gains, personalization_gains, uses_llm
from tailorlm.eval.report import write_reports

RATING, TITLE = "amazon-rating", "amazon-title"


def make_row(
    name: str,
    values: list[float],
    *,
    task: str = RATING,
    method: str = "identity",
    predictor: str = "majority",
    validation: float | None = None,
    baseline: bool = False,
    **flags: Any,
) -> dict[str, Any]:
    """A suite result row as run_suite writes it, with per-query values of the task's first metric."""
    metric = "mae" if task == RATING else "rouge1"
    mean = float(np.mean(values))
    row: dict[str, Any] = {
        "name": name,
        "task": task,
        "method": method,
        "predictor": predictor,
        "baseline": baseline,
        "metrics": {metric: mean, "n": len(values)},
        "ci": {metric: {"estimate": mean, "low": mean - 0.05, "high": mean + 0.05, "level": 0.95}},
        "rows": [{"user_id": f"u{i % 7}", "example_id": f"e{i}"} for i in range(len(values))],
        "per_example": {metric: [float(v) for v in values]},
    }
    if validation is not None:
        row["validation"] = {"n": 20, "metrics": {metric: validation}}
    return row | flags


def make_report(*rows: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    return {
        "suite": "s",
        "description": "",
        "config": {"seed": seed},
        "when": "now",
        "machine": {"cpus": 1},
        "datasets": [],
        "results": list(rows),
    }


def noise(n: int, seed: int, scale: float = 0.3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, scale, n)


BASE_ERR = list(1.0 + noise(60, 1))  # per-query absolute errors of a non-personalized row


def test_the_baseline_is_chosen_on_validation_not_on_test() -> None:
    # "val-best" is best on validation but worse on test than "test-best": validation decides.
    val_best = make_row("val-best", [v + 0.5 for v in BASE_ERR], validation=0.6, personalized=False)
    test_best = make_row("test-best", BASE_ERR, validation=0.9, personalized=False, baseline=True)
    pers = make_row("user-offset", BASE_ERR, method="rag-bm25", validation=0.8, personalized=True)
    task = personalization_gains(make_report(val_best, test_best, pers))["tasks"][RATING]
    assert task["chosen_on"] == "validation"
    assert task["baseline"]["row"] == "val-best" and task["baseline"]["validation"] == 0.6
    assert task["metric"] == "mae" and task["lower_is_better"] is True
    # Paired against the validation-chosen baseline: the personalized row is 0.5 MAE better on test.
    assert task["best"]["row"] == "user-offset" and abs(task["delta"] - (-0.5)) < 1e-9


def test_ties_on_validation_go_to_the_first_row() -> None:
    a = make_row("first", BASE_ERR, method="rag-bm25", validation=0.7, personalized=True)
    b = make_row("second", BASE_ERR, method="rag-bm25", validation=0.7, personalized=True)
    base = make_row("base", BASE_ERR, validation=0.9, personalized=False)
    assert personalization_gains(make_report(base, a, b))["tasks"][RATING]["best"]["row"] == "first"
    assert personalization_gains(make_report(base, b, a))["tasks"][RATING]["best"]["row"] == "second"


def test_a_personalized_row_that_is_clearly_better_wins() -> None:
    better = [max(0.0, v - 0.3) + 0.05 * e for v, e in zip(BASE_ERR, noise(60, 2), strict=True)]
    base = make_row("item-mean", BASE_ERR, predictor="item-mean", validation=1.0, personalized=False)
    pers = make_row("user-offset", better, method="rag-bm25", predictor="user-mean", validation=0.7, personalized=True)
    task = personalization_gains(make_report(base, pers))["tasks"][RATING]
    assert task["n"] == 60 and task["delta"] < -0.2
    assert task["delta_ci"][1] < 0 and task["wins"] is True and task["p"] < 0.05
    assert task["verdict"].startswith("user-offset beats item-mean by 0.")

    # Higher is better for rouge1: a higher personalized row wins with a positive delta.
    gen_base = make_row("global", list(0.3 + 0.05 * noise(60, 3)), task=TITLE, validation=0.3, personalized=False)
    gen_pers = make_row("rag", list(0.5 + 0.05 * noise(60, 4)), task=TITLE, validation=0.5, personalized=True)
    gen = personalization_gains(make_report(gen_base, gen_pers))["tasks"][TITLE]
    assert gen["metric"] == "rouge1" and gen["lower_is_better"] is False
    assert gen["delta"] > 0.1 and gen["delta_ci"][0] > 0 and gen["wins"] is True


def test_no_gain_when_the_difference_is_nil_noise_or_the_wrong_way() -> None:
    base = make_row("item-mean", BASE_ERR, validation=1.0, personalized=False)
    same = make_row("rag", BASE_ERR, method="rag-bm25", validation=0.9, personalized=True)
    task = personalization_gains(make_report(base, same))["tasks"][RATING]
    assert task["delta"] == 0 and task["wins"] is False
    assert task["verdict"].startswith("no personalized row beats item-mean") and "CI includes 0" in task["verdict"]

    noisy = make_row("rag", list(np.abs(1.0 + noise(60, 9))), method="rag-bm25", validation=0.9, personalized=True)
    task = personalization_gains(make_report(base, noisy))["tasks"][RATING]
    assert task["delta_ci"][0] < 0 < task["delta_ci"][1] and task["wins"] is False

    # Significantly worse (higher MAE): the CI excludes 0, but on the wrong side, so no win.
    worse = make_row("rag", [v + 0.4 for v in BASE_ERR], method="rag-bm25", validation=0.9, personalized=True)
    task = personalization_gains(make_report(base, worse))["tasks"][RATING]
    assert task["delta_ci"][0] > 0 and task["wins"] is False and "worse" in task["verdict"]
    assert "| no gain |" in markdown_gains(personalization_gains(make_report(base, worse)))


def test_best_llm_is_chosen_only_among_llm_rows() -> None:
    base = make_row("base", BASE_ERR, validation=1.0, personalized=False, uses_llm=False)
    shared_llm = make_row(
        "zero-shot", BASE_ERR, predictor="generate", validation=0.1, personalized=False, uses_llm=True
    )
    cheap = make_row("user-mean", BASE_ERR, validation=0.5, personalized=True, uses_llm=False)
    llm_a = make_row("rag/generate", [v - 0.1 for v in BASE_ERR], validation=0.8, personalized=True, uses_llm=True)
    llm_b = make_row("lora/generate", BASE_ERR, validation=0.9, personalized=True, uses_llm=True)
    task = personalization_gains(make_report(base, shared_llm, cheap, llm_b, llm_a))["tasks"][RATING]
    assert task["baseline"]["row"] == "zero-shot"  # the best non-personalized row, LLM or not
    assert task["best"]["row"] == "user-mean"
    llm = task["best_llm"]
    assert llm["row"] == "rag/generate" and abs(llm["delta"] - (-0.1)) < 1e-9 and llm["n"] == 60
    assert llm["wins"] is True and "rag/generate: -0.100" in markdown_gains({"tasks": {RATING: task}})

    no_llm = personalization_gains(make_report(base, cheap))["tasks"][RATING]
    assert no_llm["best"]["row"] == "user-mean" and no_llm["best_llm"] is None


def test_without_validation_the_marked_baseline_is_used_and_no_best_is_picked() -> None:
    plain = make_row("plain", BASE_ERR, personalized=False)
    marked = make_row("marked", BASE_ERR, personalized=False, baseline=True)
    pers = make_row("rag", [v - 0.5 for v in BASE_ERR], method="rag-bm25", personalized=True, uses_llm=True)
    task = personalization_gains(make_report(plain, marked, pers))["tasks"][RATING]
    assert task["baseline"]["row"] == "marked" and "marked baseline" in task["chosen_on"]
    # The personalized row is far better on test, but without validation values it is never chosen.
    assert task["best"] is None and task["best_llm"] is None and task["wins"] is False and task["delta"] is None
    assert "validation" in task["verdict"]

    # Validated baselines but unvalidated personalized rows: still no best.
    validated = make_row("plain", BASE_ERR, personalized=False, validation=1.0)
    task = personalization_gains(make_report(validated, marked, pers))["tasks"][RATING]
    assert task["chosen_on"] == "validation" and task["baseline"]["row"] == "plain" and task["best"] is None


def test_personalized_and_uses_llm_are_inferred_for_older_reports() -> None:
    def r(method: str, predictor: str, **flags: Any) -> dict[str, Any]:
        return {"method": method, "predictor": predictor} | flags

    assert not is_personalized(r("identity", "majority"))
    assert not is_personalized(r("lora-global", "generate"))
    assert not is_personalized(r("identity", "item-mean"))
    assert is_personalized(r("identity", "user-mean"))
    assert is_personalized(r("rag-bm25", "generate"))
    assert is_personalized(r("lora-global+rag-bm25", "choice"))
    assert not is_personalized(r("rag-bm25", "generate", personalized=False))  # the key wins
    assert uses_llm(r("identity", "choice-calibrated")) and not uses_llm(r("rag-bm25", "retrieval-vote"))
    assert not uses_llm(r("rag-bm25", "generate", uses_llm=False))

    # Through the table: no flags anywhere, the roles follow from method and predictor.
    base = make_row("zero-shot", BASE_ERR, predictor="generate", validation=1.0)
    vote = make_row("vote", BASE_ERR, method="rag-bm25", predictor="retrieval-vote", validation=0.6)
    rag = make_row("rag", BASE_ERR, method="rag-bm25", predictor="generate", validation=0.7)
    task = personalization_gains(make_report(base, vote, rag))["tasks"][RATING]
    assert task["baseline"]["row"] == "zero-shot" and task["best"]["row"] == "vote"
    assert task["best_llm"]["row"] == "rag"


def test_skipped_rows_and_rows_without_the_metric_are_ignored() -> None:
    skipped = {"name": "x", "task": TITLE, "method": "identity", "predictor": "generate", "skipped": "no data"}
    no_ci = make_row("y", BASE_ERR, validation=1.0) | {"ci": {}}
    assert personalization_gains(make_report(skipped, no_ci)) == {"suite": "s", "tasks": {}}


def test_the_seed_defaults_to_the_suite_seed() -> None:
    base = make_row("base", BASE_ERR, validation=1.0, personalized=False)
    pers = make_row("rag", list(np.abs(1.0 + noise(60, 5))), validation=0.5, personalized=True)
    implicit = personalization_gains(make_report(base, pers, seed=7))["tasks"][RATING]
    assert implicit == personalization_gains(make_report(base, pers, seed=0), seed=7)["tasks"][RATING]
    assert implicit["delta_ci"] != personalization_gains(make_report(base, pers, seed=0))["tasks"][RATING]["delta_ci"]


def test_write_reports_writes_the_gain_table(tmp_path: Path) -> None:
    base = make_row("item-mean", BASE_ERR, validation=1.0, personalized=False, baseline=True)
    pers = make_row("user-offset", [v - 0.3 for v in BASE_ERR], validation=0.7, personalized=True)
    files = write_reports(make_report(base, pers), tmp_path)
    table = json.loads(files["gains"].read_text())
    assert files["gains"] == tmp_path / "personalization_gains.json"
    assert table["tasks"][RATING]["wins"] is True and table["tasks"][RATING]["best"]["row"] == "user-offset"
    md = files["markdown"].read_text()
    assert "## Personalization gains" in md and "chosen on validation users" in md
    line = next(x for x in md.splitlines() if x.startswith(f"| {RATING} | mae"))
    assert "item-mean:" in line and "user-offset:" in line and line.endswith("| wins |")
    page = files["html"].read_text()
    assert "<h2>Personalization gains</h2>" in page and "user-offset: " in page
