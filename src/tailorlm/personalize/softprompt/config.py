"""Configuration of PPlug-style soft-prompt personalization: serving and training the projector."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tailorlm.personalize.base import MethodConfig
from tailorlm.personalize.softprompt.projector import POOLINGS
from tailorlm.personalize.training.jobs import config_from_mapping
from tailorlm.personalize.types import Need

__all__ = ["IF_MISSING", "SoftPromptConfig", "SoftPromptTrainConfig"]

IF_MISSING = ("error", "skip")


@dataclass
class SoftPromptConfig(MethodConfig):
    """Serve a user embedding as soft prompt tokens (PPlug, Liu et al. 2024).

    Args:
        variant: registry variant of the projector (``tailorlm train --method softprompt``
            writes "default").
        if_missing: "error" (default) refuses to fit or serve without a trained projector
            for the task; "skip" serves without a soft prompt instead (scope "none"),
            e.g. behind a generator that cannot take input embeddings.
    """

    variant: str = field(default="default", metadata={"help": "projector variant in the adapter registry"})
    if_missing: str = field(default="error", metadata={"help": "error | skip when no projector is trained"})

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant.strip():
            raise ValueError(f"variant must be a non-empty string, got {self.variant!r}")
        if self.if_missing not in IF_MISSING:
            raise ValueError(f"if_missing must be one of {IF_MISSING}, got {self.if_missing!r}")

    def needs(self) -> set[Need]:
        return {"generator", "embedder"}  # the projector maps the user's embedded history into the model


@dataclass(frozen=True)
class SoftPromptTrainConfig:
    """Options of a softprompt job (``TrainJob.config``)."""

    hidden: int = 256  # projector MLP width
    n_tokens: int = 4  # soft tokens per user
    pooling: str = "attention"  # attention (input-aware, PPlug) | mean
    temperature: float = 0.1  # softmax temperature of the attention pooling
    max_items: int = 32  # most recent eligible history entries pooled
    lr: float = 1e-4  # soft tokens are sharp: Adam at 1e-3 overshoots within a few steps
    weight_decay: float = 0.0
    steps: int = 100
    batch_size: int = 4
    max_length: int = 256  # prompt + answer tokens; a longer prompt loses its middle (encode_sft)
    seed: int = 0
    balanced: bool = False  # class-balanced sampling for label tasks
    max_examples: int | None = None  # cap on training rows (a seeded sample)
    variant: str = "default"

    def __post_init__(self) -> None:
        checks = {
            "hidden": self.hidden >= 1,
            "n_tokens": self.n_tokens >= 1,
            "pooling": self.pooling in POOLINGS,
            "temperature": self.temperature > 0,
            "max_items": self.max_items >= 1,
            "lr": self.lr > 0,
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "max_length": self.max_length >= 8,
            "max_examples": self.max_examples is None or self.max_examples >= 1,
            "variant": bool(self.variant),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"SoftPromptTrainConfig: invalid {bad[0]}={getattr(self, bad[0])!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SoftPromptTrainConfig:
        return config_from_mapping(cls, data, tuples=())
