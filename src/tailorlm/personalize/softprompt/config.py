"""Configuration of PPlug-style soft-prompt personalization."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailorlm.personalize.base import MethodConfig

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
