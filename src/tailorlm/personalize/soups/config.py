"""Settings of Personalized-Soups merging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tailorlm.personalize.base import MethodConfig
from tailorlm.personalize.types import Need

__all__ = ["SoupsConfig"]

_COMBINATIONS = ("cat", "linear")


@dataclass
class SoupsConfig(MethodConfig):
    """Which dimension adapters to mix, and how.

    Args:
        dimensions: preference dimensions; each needs a global adapter of
            ``adapter_method`` with ``variant=<dimension>`` (``tailorlm.personalize.dpo.train`` with
            ``dimension=...``).
        task: the adapters' task; None: the query's task.
        adapter_method: registry method of the dimension adapters.
        combination: PEFT ``add_weighted_adapter`` type. "cat" stacks the adapters'
            ranks, giving exactly sum_i w_i * delta_W_i; "linear" averages A and B
            separately (needs equal ranks; cross terms make it an approximation).
        weights_attribute: user attribute holding explicit weights ({dimension: weight}).
        if_missing: "error" (raise, naming the train command) or "skip" (serve the base model).
        cache_capacity: merged adapters kept loaded (LRU); dimension adapters stay loaded.
    """

    dimensions: tuple[str, ...] = ("concise", "detailed")
    task: str | None = None
    adapter_method: str = "dpo"
    combination: Literal["cat", "linear"] = "cat"
    weights_attribute: str = "preference_weights"
    if_missing: Literal["error", "skip"] = "error"
    cache_capacity: int = 8

    def __post_init__(self) -> None:
        self.dimensions = tuple(self.dimensions)
        if len(self.dimensions) < 2 or len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"SoupsConfig.dimensions must name 2 or more distinct dimensions, got {self.dimensions}")
        if not all(isinstance(d, str) and d.strip() for d in self.dimensions):
            raise ValueError(f"SoupsConfig.dimensions must be non-empty strings, got {self.dimensions}")
        if self.combination not in _COMBINATIONS:
            raise ValueError(f"SoupsConfig.combination must be one of {_COMBINATIONS}, got {self.combination!r}")
        if self.if_missing not in ("error", "skip"):
            raise ValueError(f"SoupsConfig.if_missing must be 'error' or 'skip', got {self.if_missing!r}")
        if self.cache_capacity < 1:
            raise ValueError(f"SoupsConfig.cache_capacity must be >= 1, got {self.cache_capacity}")

    def needs(self) -> set[Need]:
        return {"generator"}
