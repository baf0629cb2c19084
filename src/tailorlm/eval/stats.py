"""Uncertainty: bootstrap confidence intervals and a paired test against the baseline.

Every method in a grid is evaluated on the same queries (same split, same seed), so
comparisons are paired: the test resamples query indices once and applies them to
both methods, which removes the between-user variance that dominates small samples.
Resampling uses ``scipy.stats.bootstrap`` (percentile intervals: BCa is undefined
when every resample gives the same value, as with a constant predictor).

When a user contributes several queries (``groups``: the user of each value), their
errors are correlated, and resampling queries would understate the uncertainty: then
whole users are resampled (the cluster bootstrap), each draw taking all of a user's
queries. With one query per user both are the same resampling, and the query path is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CI", "PairedTest", "bootstrap_ci", "paired_test", "statistic_for"]

Statistic = Callable[[np.ndarray], float]


def _mean(v: np.ndarray) -> float:
    return float(np.mean(v))


def _root_mean(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(v)))


def statistic_for(metric: str) -> tuple[str, Statistic]:
    """Which per-example value a metric resamples and how it aggregates.

    RMSE is the root of the mean squared error, so it resamples squared errors and
    aggregates with a root mean; every other metric here is a mean of its per-example values.
    """
    return ("sq_error", _root_mean) if metric == "rmse" else (metric, _mean)


def _clustered(groups: Sequence[Hashable] | None, n: int) -> np.ndarray | None:
    """Each value's cluster index when some cluster holds several values, else None."""
    if groups is None:
        return None
    if len(groups) != n:
        raise ValueError(f"groups must name one group per value: {len(groups)} groups for {n} values")
    _, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    return inverse if inverse.max() + 1 < n else None


def _cluster_means(v: np.ndarray, cluster: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The mean of ``v`` over each draw of whole clusters (rows of ``draws``: cluster indices)."""
    sums = np.bincount(cluster, weights=v)
    counts = np.bincount(cluster).astype(float)
    return sums[draws].sum(axis=1) / counts[draws].sum(axis=1)


def _from_means(statistic: Statistic, means: np.ndarray) -> np.ndarray:
    """``statistic`` of each resample, from the resample's mean: the statistics here (mean,
    root mean) are functions of the mean of their values, which is what makes a cluster
    resample cheap. Any other statistic is refused rather than resampled wrongly."""
    if statistic not in (_mean, _root_mean):
        raise ValueError("resampling by group supports the mean and root-mean statistics (statistic_for)")
    return np.array([statistic(np.array([m])) for m in means])


@dataclass(frozen=True)
class CI:
    estimate: float
    low: float
    high: float
    level: float = 0.95

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level}


@dataclass(frozen=True)
class PairedTest:
    """Method minus baseline on the same queries, its bootstrap CI and a two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return {"difference": self.difference, "low": self.low, "high": self.high, "p_value": self.p_value, "n": self.n}


def bootstrap_ci(
    values: Sequence[float],
    *,
    statistic: Statistic = _mean,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> CI:
    """Percentile bootstrap interval of ``statistic`` over per-example ``values``, resampling
    whole ``groups`` (users) when given and some group holds several values."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values to bootstrap")
    estimate = statistic(v)
    if v.size == 1 or np.all(v == v[0]):
        return CI(estimate, estimate, estimate, level)  # no spread to resample
    cluster = _clustered(groups, v.size)
    if cluster is not None:
        draws = np.random.default_rng(seed).integers(0, cluster.max() + 1, size=(n_resamples, cluster.max() + 1))
        boot = _from_means(statistic, _cluster_means(v, cluster, draws))
        alpha = (1 - level) / 2
        low, high = np.quantile(boot, [alpha, 1 - alpha])
        return CI(estimate, float(low), float(high), level)
    res = bootstrap(
        (v,),
        lambda x, axis=-1: np.apply_along_axis(statistic, axis, x),
        confidence_level=level,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return CI(estimate, float(res.confidence_interval.low), float(res.confidence_interval.high), level)


def paired_test(
    method: Sequence[float],
    baseline: Sequence[float],
    *,
    statistic: Statistic = _mean,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> PairedTest:
    """Paired bootstrap of ``statistic(method) - statistic(baseline)`` over the same examples
    (over whole ``groups``, users, when given and some group holds several examples).

    The p-value is the two-sided bootstrap p-value of "no difference": twice the share
    of resampled differences on the far side of zero (at least 1 / n_resamples).
    """
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same examples: {a.size} vs {b.size} values")
    if a.size == 0:
        raise ValueError("no values to compare")
    diff = statistic(a) - statistic(b)
    rng = np.random.default_rng(seed)
    cluster = _clustered(groups, a.size)
    if cluster is None:
        idx = rng.integers(0, a.size, size=(n_resamples, a.size))
        boot = np.array([statistic(a[i]) - statistic(b[i]) for i in idx])
    else:
        draws = rng.integers(0, cluster.max() + 1, size=(n_resamples, cluster.max() + 1))
        boot = _from_means(statistic, _cluster_means(a, cluster, draws)) - _from_means(
            statistic, _cluster_means(b, cluster, draws)
        )
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    if np.all(boot == 0):
        p = 1.0
    else:
        p = min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
        p = max(p, 1.0 / n_resamples)
    return PairedTest(float(diff), float(low), float(high), float(p), int(a.size))
