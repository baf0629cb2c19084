"""Per-user mixing weights of the preference dimensions, from the user's own stored data.

Order of evidence (the first that exists wins, and is reported as the weights' source):

1. ``attribute``: an explicit user attribute (default ``preference_weights``), a mapping
   or JSON object ``{dimension: weight}``; dimensions it omits get 0.
2. ``feedback``: the share of the user's stored preferences on each dimension, strictly
   before the query's time. Derived dimension twins (``training/pairs.py``) are not feedback:
   every review yields one pair of each dimension, so they say nothing about the user.
3. ``uniform``: no evidence, equal weights (the clear default).

Weights are normalised to sum to 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tailorlm.data import Store

__all__ = ["user_weights"]


def _explicit(raw: Any, user_id: str, attribute: str, dims: Sequence[str]) -> dict[str, float] | None:
    if raw in (None, "", {}):
        return None
    where = f"user {user_id!r} attribute {attribute!r}"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where} is not a JSON object of weights: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must map dimension -> weight, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(dims))
    if unknown:
        raise ValueError(f"{where} names unknown dimension(s) {unknown}; known: {list(dims)}")
    out: dict[str, float] = {}
    for d in dims:
        v = raw.get(d, 0.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{where}: weight of {d!r} must be a finite number >= 0, got {v!r}")
        out[d] = float(v)
    if sum(out.values()) <= 0:
        raise ValueError(f"{where}: weights must not all be 0")
    return out


def user_weights(
    store: Store,
    user_id: str,
    dimensions: Sequence[str],
    *,
    before: int | None = None,
    attribute: str = "preference_weights",
) -> tuple[dict[str, float], str]:
    """``({dimension: weight}, source)`` for one user; source is attribute | feedback | uniform.

    Raises:
        ValueError: a malformed explicit attribute (says which user, which attribute, what).
    """
    from tailorlm.personalize.training.pairs import SYMMETRIC_SOURCES

    dims = list(dimensions)
    user = store.get_user(user_id=user_id)
    raw = user.attributes.get(attribute) if user is not None else None
    weights, source = _explicit(raw, user_id, attribute, dims), "attribute"
    if weights is None:
        counts = dict.fromkeys(dims, 0.0)
        for p in store.get_preferences(user_id=user_id):
            if p.dimension not in counts or p.source in SYMMETRIC_SOURCES:
                continue
            if before is not None and (p.timestamp is None or p.timestamp >= before):
                continue
            counts[p.dimension] += 1
        weights, source = (counts, "feedback") if sum(counts.values()) > 0 else (dict.fromkeys(dims, 1.0), "uniform")
    total = sum(weights.values())
    return {d: weights[d] / total for d in dims}, source
