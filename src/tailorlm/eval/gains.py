"""The personalization gain table: does using a user's own data beat the strongest row that does not?

A suite report lists every row with its test metric, but the question a reader asks is
narrower: per task, how much does the best personalized row gain over the strongest
non-personalized one, and is that gain real? Answering it by picking both rows on their
test values would overstate the gain (the winner's curse), so both rows are chosen on
their *validation* values (users disjoint from the test users) and only then compared on
the test queries, with a paired bootstrap on the queries both rows answered.

Everything here is a pure function of the report dict (``results.json``); nothing is run.
"""

from __future__ import annotations

from typing import Any

from tailorlm.eval.compare import paired, primary_metrics
from tailorlm.eval.metrics import METRIC_DIRECTION
from tailorlm.tasks import get_task

__all__ = ["is_personalized", "markdown_gains", "personalization_gains", "uses_llm"]

# Rows written before reports said whether a row is personalized: a row is not when every
# part of its method and its predictor ignore the user's own data.
_SHARED_METHODS = frozenset({"identity", "lora-global"})
_SHARED_PREDICTORS = frozenset(
    {
        "majority",
        "global-text",
        "generate",
        "choice",
        "choice-calibrated",
        "choice-prior",
        "copy-input",
        "first-words",
        "item-mean",
        "llm-text",
        "auto",
    }
)
_LLM_PREDICTORS = frozenset({"generate", "choice", "choice-calibrated", "choice-prior", "llm-text", "user-stack-llm"})


def is_personalized(row: dict[str, Any]) -> bool:
    """The row's ``personalized`` flag; inferred from method and predictor for older reports."""
    if "personalized" in row:
        return bool(row["personalized"])
    parts = str(row.get("method", "")).split("+")
    shared = all(p in _SHARED_METHODS for p in parts) and row.get("predictor") in _SHARED_PREDICTORS
    return not shared


def uses_llm(row: dict[str, Any]) -> bool:
    """The row's ``uses_llm`` flag; inferred from the predictor for older reports."""
    if "uses_llm" in row:
        return bool(row["uses_llm"])
    return row.get("predictor") in _LLM_PREDICTORS


def _validation(row: dict[str, Any], metric: str) -> float | None:
    """The row's validation value of ``metric``, or None when it had no validation run."""
    value = (row.get("validation") or {}).get("metrics", {}).get(metric)
    return None if value is None else float(value)


def _pick(rows: list[dict[str, Any]], metric: str, sign: int) -> dict[str, Any] | None:
    """The row with the best validation value; the first one in row order wins a tie.

    Rows without a validation value are never chosen: selecting on test values would
    bias the very comparison this table reports.
    """
    best, best_score = None, None
    for r in rows:
        value = _validation(r, metric)
        if value is None:
            continue
        score = sign * value
        if best_score is None or score > best_score:
            best, best_score = r, score
    return best


def _summary(row: dict[str, Any], metric: str) -> dict[str, Any]:
    """Name, test estimate with its CI, and the validation value a row was chosen on."""
    ci = row["ci"][metric]
    return {
        "row": row["name"],
        "value": ci["estimate"],
        "ci": [ci["low"], ci["high"]],
        "validation": _validation(row, metric),
    }


def _comparison(row: dict[str, Any], base: dict[str, Any], metric: str, sign: int, seed: int) -> dict[str, Any]:
    """Paired test of ``row`` minus ``base`` on common queries; ``wins`` when the CI clears 0 on the better side."""
    test = paired(row, base, seed, base["name"])["tests"].get(metric)
    if test is None:  # no common queries (or no per-example values): nothing can be claimed
        return {"delta": None, "delta_ci": None, "p": None, "n": 0, "wins": False}
    low, high = test["low"], test["high"]
    wins = high < 0 if sign < 0 else low > 0
    return {
        "delta": test["difference"],
        "delta_ci": [low, high],
        "p": test["p_value"],
        "n": test["n"],
        "wins": bool(wins),
    }


def _choose_baseline(rows: list[dict[str, Any]], metric: str, sign: int) -> tuple[dict[str, Any] | None, str]:
    """The strongest non-personalized row on validation, else the row the suite marks as baseline."""
    chosen = _pick([r for r in rows if not is_personalized(r)], metric, sign)
    if chosen is not None:
        return chosen, "validation"
    marked = next((r for r in rows if r.get("baseline")), None)
    if marked is not None:
        return marked, "marked baseline (no validation runs)"
    return None, "none (no validation runs and no marked baseline)"


def _verdict(entry: dict[str, Any], metric: str, personalized: list[dict[str, Any]]) -> str:
    """One sentence a reader can quote: who beats whom by how much, or why nothing is claimed."""
    base = entry["baseline"]
    if base is None:
        return f"no baseline: {entry['chosen_on']}"
    best = entry["best"]
    if best is None:
        if not personalized:
            return f"no personalized row in this task to compare with {base['row']}"
        return (
            f"no personalized row has validation values, so none is chosen (rows are never selected on test values); "
            f"baseline {base['row']}"
        )
    if entry["delta"] is None:
        return f"{best['row']} and {base['row']} share no test queries; no comparison"
    d, (lo, hi) = entry["delta"], entry["delta_ci"]
    stats = f"delta {d:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}], p={entry['p']:.3f}, n={entry['n']}"
    if entry["wins"]:
        return f"{best['row']} beats {base['row']} by {abs(d):.3f} {metric} ({stats})"
    why = "CI includes 0" if lo <= 0 <= hi else "significantly worse"
    return f"no personalized row beats {base['row']} (best: {best['row']}, {stats}; {why})"


def _task_gains(task: str, rows: list[dict[str, Any]], seed: int) -> dict[str, Any] | None:
    """The gain entry of one task, or None when its kind has no primary metric or no row has it."""
    metrics = primary_metrics(get_task(task).kind)
    if not metrics:
        return None
    metric = metrics[0]
    rows = [r for r in rows if metric in (r.get("ci") or {})]
    if not rows:
        return None
    sign = METRIC_DIRECTION.get(metric, 1)
    base, chosen_on = _choose_baseline(rows, metric, sign)
    personalized = [r for r in rows if is_personalized(r) and r is not base]
    entry: dict[str, Any] = {
        "metric": metric,
        "lower_is_better": sign < 0,
        "chosen_on": chosen_on,
        "baseline": _summary(base, metric) if base is not None else None,
        "best": None,
        "delta": None,
        "delta_ci": None,
        "p": None,
        "n": 0,
        "wins": False,
        "best_llm": None,
    }
    best = _pick(personalized, metric, sign)
    if base is not None and best is not None:
        entry["best"] = _summary(best, metric)
        entry |= _comparison(best, base, metric, sign, seed)
    llm = _pick([r for r in personalized if uses_llm(r)], metric, sign)
    if base is not None and llm is not None:
        entry["best_llm"] = _summary(llm, metric) | _comparison(llm, base, metric, sign, seed)
    entry["verdict"] = _verdict(entry, metric, personalized)
    return entry


def personalization_gains(report: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """Per task: the strongest non-personalized row, the best personalized one, and the paired gain.

    ``seed`` drives the paired bootstrap; it defaults to the suite's seed so the table
    reproduces the report's own paired tests. Skipped rows are ignored.
    """
    if seed is None:
        seed = int((report.get("config") or {}).get("seed", 0) or 0)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in report.get("results", []):
        if not r.get("skipped"):
            by_task.setdefault(r["task"], []).append(r)
    tasks = {}
    for task, rows in by_task.items():
        if (entry := _task_gains(task, rows, seed)) is not None:
            tasks[task] = entry
    return {"suite": report.get("suite"), "tasks": tasks}


def _value_cell(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    lo, hi = side["ci"]
    return f"{side['row']}: {side['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def _delta_cell(entry: dict[str, Any]) -> str:
    if entry.get("delta") is None:
        return "-"
    lo, hi = entry["delta_ci"]
    return f"{entry['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _outcome(entry: dict[str, Any]) -> str:
    """Short verdict for the table; the full sentence is in the JSON."""
    if entry["baseline"] is None:
        return "no baseline"
    if entry["best"] is None:
        return "no validated row"
    return "wins" if entry["wins"] else "no gain"


def markdown_gains(gains: dict[str, Any]) -> str:
    """The "Personalization gains" section: one row per task, with a legend on how rows were chosen."""
    out = [
        "## Personalization gains",
        "",
        "Rows chosen on validation users (disjoint from the test users), never on test values; "
        "delta = best personalized minus strongest non-personalized, paired bootstrap on the test queries "
        "both rows answered (95% CI).",
        "",
        "| task | metric | strongest non-personalized (value [CI]) | best personalized (value [CI]) | "
        "delta [95% CI] | p | n | best LLM row (delta [CI]) | verdict |",
        "|---|---|---|---|---|---:|---:|---|---|",
    ]
    for task, e in gains.get("tasks", {}).items():
        direction = "lower is better" if e["lower_is_better"] else "higher is better"
        llm = e.get("best_llm")
        llm_cell = f"{llm['row']}: {_delta_cell(llm)}" if llm else "-"
        p = f"{e['p']:.3f}" if e.get("p") is not None else "-"
        cells = [
            task,
            f"{e['metric']} ({direction})",
            _value_cell(e["baseline"]) + ("" if e["chosen_on"] == "validation" else " (marked baseline)"),
            _value_cell(e["best"]),
            _delta_cell(e),
            p,
            str(e.get("n", 0)),
            llm_cell,
            _outcome(e),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
