"""Uncertainty of one result and its paired comparison with a baseline, on result dicts.

``tailorlm run`` and the bench suites report the same figures: a 95% bootstrap CI per
primary metric of the task kind, and a paired bootstrap test of a method against a
baseline evaluated on the same queries. They share these functions so a number printed
by ``run`` is the number a suite's report shows for the same split and seed.

A result dict is ``RunResult.to_dict()`` (``task``, ``rows`` with ``user_id`` and
``example_id``, and ``per_example`` values in the order of ``rows``). A per-example value
may be None where the metric is undefined for that query (evidence recall of a question
without evidence): it is left out of CIs, and of paired tests together with its partner.
Rows that carry a ``category`` (memory QA's question types) also get a CI per category.
"""

from __future__ import annotations

from typing import Any

from tailorlm.eval.metrics import METRIC_DIRECTION
from tailorlm.eval.stats import bootstrap_ci, paired_test, statistic_for
from tailorlm.tasks import get_task

__all__ = ["by_category", "paired", "primary_metrics", "with_uncertainty"]

_PRIMARY = {
    "rating": ("mae", "rmse"),
    "classification": ("accuracy",),
    "generation": ("rouge1", "rougeL", "meteor"),
    "ranking": ("ndcg@10", "hit@10"),
    "qa": ("f1", "evidence_recall", "judge"),
}


def primary_metrics(kind: str) -> tuple[str, ...]:
    """Metrics shown (with CIs) per task kind, the first being the one plots and gains use.

    Defined here, below the suite, so the suite and the CLI can share it without a cycle.
    """
    return _PRIMARY.get(kind, ())


def _cis(
    per_example: dict[str, list[Any]],
    metrics: tuple[str, ...],
    seed: int,
    keep: list[int] | None = None,
    users: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """A bootstrap CI per metric over its defined values (resampling ``users``, each row's
    user, when a user has several rows); with ``keep``, of those rows only and with ``n``, the
    number of values it rests on (a category's questions with evidence)."""
    cis = {}
    rows = None if keep is None else set(keep)
    for metric in metrics:
        source, stat = statistic_for(metric)
        values = per_example.get(source) or []
        kept = [i for i, v in enumerate(values) if v is not None and (rows is None or i in rows)]
        defined = [values[i] for i in kept]
        if defined:
            groups = [users[i] for i in kept] if users else None
            ci: dict[str, Any] = bootstrap_ci(defined, statistic=stat, seed=seed, groups=groups).to_dict()
            cis[metric] = ci if rows is None else ci | {"n": len(defined)}
    return cis


def _users(result: dict[str, Any]) -> list[str]:
    return [str(row.get("user_id")) for row in result["rows"]]


def by_category(result: dict[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """Per row ``category`` (in sorted order): its number of queries and a CI per primary metric."""
    metrics = primary_metrics(get_task(result["task"]).kind)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(result["rows"]):
        if row.get("category") is not None:
            groups.setdefault(str(row["category"]), []).append(i)
    return {
        cat: {"n": len(idx), "ci": _cis(result["per_example"], metrics, seed, keep=idx, users=_users(result))}
        for cat, idx in sorted(groups.items())
    }


def with_uncertainty(result: dict[str, Any], seed: int) -> dict[str, Any]:
    """Attach ``result["ci"]``: a bootstrap CI per primary metric that has per-example values,
    and ``result["ci_by_category"]`` when the rows carry categories.

    A metric without per-example values (METEOR when it was not computed) gets no CI
    rather than a made-up one. Returns ``result`` itself, updated.
    """
    result["ci"] = _cis(
        result["per_example"], primary_metrics(get_task(result["task"]).kind), seed, users=_users(result)
    )
    if any(row.get("category") is not None for row in result["rows"]):
        result["ci_by_category"] = by_category(result, seed)
    return result


def paired(result: dict[str, Any], base: dict[str, Any], seed: int, baseline_name: str) -> dict[str, Any]:
    """Paired tests of ``result`` against ``base`` on the queries both evaluated.

    Pairing on (user_id, example_id) rather than on row order lets rows with different
    sample sizes (nested samples) be compared on their common queries. ``gain_per_query``
    is signed so that positive always means better than the baseline. A user with several
    common queries is resampled whole (:mod:`tailorlm.eval.stats`).
    """
    idx_a = {(r["user_id"], r["example_id"]): i for i, r in enumerate(result["rows"])}
    idx_b = {(r["user_id"], r["example_id"]): i for i, r in enumerate(base["rows"])}
    common = sorted(set(idx_a) & set(idx_b))
    out: dict[str, Any] = {"baseline": baseline_name, "n": len(common), "tests": {}, "gain_per_query": {}}
    if not common:
        return out
    for metric in primary_metrics(get_task(result["task"]).kind):
        source, stat = statistic_for(metric)
        a, b = result["per_example"].get(source), base["per_example"].get(source)
        if not a or not b:
            continue
        both = [(a[idx_a[q]], b[idx_b[q]], q[0]) for q in common if a[idx_a[q]] is not None and b[idx_b[q]] is not None]
        if not both:
            continue
        va, vb, users = [x for x, _, _ in both], [y for _, y, _ in both], [u for _, _, u in both]
        out["tests"][metric] = paired_test(va, vb, statistic=stat, seed=seed, groups=users).to_dict()
        sign = METRIC_DIRECTION.get(metric, 1)
        out["gain_per_query"][metric] = [sign * (x - y) for x, y in zip(va, vb, strict=True)]
    return out
