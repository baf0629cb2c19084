"""Settings of DPO personalization: which adapter serves a user, and how one is trained."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailorlm.personalize.lora.config import LoraMethodConfig
from tailorlm.personalize.training.jobs import config_from_mapping

__all__ = ["DpoMethodConfig", "DpoTrainConfig"]

_INIT = (None, "lora", "lora-global")


@dataclass
class DpoMethodConfig(LoraMethodConfig):
    """:class:`LoraMethodConfig` looking up ``dpo`` adapters (variant "init=lora" for SFT-then-DPO ones)."""

    adapter_method: str = "dpo"


@dataclass(frozen=True)
class DpoTrainConfig:
    """Options of a DPO job (``TrainJob.config``).

    Args:
        r, alpha, dropout, target_modules: the LoRA adapter (ignored with ``init_from``).
        lr, beta, steps, batch_size, seed: optimisation; ``beta`` is DPO's KL strength.
        max_prompt_tokens: the user message is cut to this many tokens, keeping its start
            (the instruction and the beginning of the review) so completions are never cut.
        max_completion_tokens: chosen/rejected answers are cut to this many tokens.
        dimension: train on this preference dimension's pairs only (Soups); also the variant.
        sources: keep pairs whose source starts with one of these (None: every source).
        before: user scope: pairs strictly before this time.
        exclude_latest: user scope without ``before``: cut off at the user's latest example.
        max_pairs: cap on training pairs (the most recent ones).
        init_from: None, "lora" (the LoRA adapter of the same scope/owner/task) or
            "lora-global" (the task's global LoRA adapter).
        variant: registry variant (default: dimension, else "init=<init_from>", else "default").
        persona_by, n_clusters: how persona members are found (default: from "attr=value" owner).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 5e-5
    beta: float = 0.1
    steps: int = 20
    batch_size: int = 2
    max_prompt_tokens: int = 128
    max_completion_tokens: int = 32
    seed: int = 0
    dimension: str | None = None
    sources: tuple[str, ...] | None = None
    before: int | None = None
    exclude_latest: bool = True
    max_pairs: int | None = None
    init_from: str | None = None
    variant: str | None = None
    persona_by: str | None = None
    n_clusters: int = 8

    def __post_init__(self) -> None:
        checks = {
            "r": self.r >= 1,
            "alpha": self.alpha >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "lr": self.lr > 0,
            "beta": self.beta > 0,
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "max_prompt_tokens": self.max_prompt_tokens >= 8,
            "max_completion_tokens": self.max_completion_tokens >= 1,
            "max_pairs": self.max_pairs is None or self.max_pairs >= 1,
            "init_from": self.init_from in _INIT,
            "target_modules": bool(self.target_modules),
            "dimension": self.dimension is None or bool(self.dimension.strip()),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            hint = f" (one of {_INIT})" if bad[0] == "init_from" else ""
            raise ValueError(f"DpoTrainConfig: invalid {bad[0]}={getattr(self, bad[0])!r}{hint}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DpoTrainConfig:
        return config_from_mapping(cls, data, tuples=("target_modules", "sources"))

    @property
    def key_variant(self) -> str:
        return self.variant or self.dimension or (f"init={self.init_from}" if self.init_from else "default")
