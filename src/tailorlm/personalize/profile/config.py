"""Configuration of profile-augmented prompting."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailorlm.personalize.base import MethodConfig
from tailorlm.personalize.types import Need


@dataclass
class ProfileConfig(MethodConfig):
    """A description of the user in the prompt: attributes and/or an LLM-written summary (PAG).

    Args:
        summary: write a summary of the user's history with the generator
            (profile-augmented generation, Richardson et al. 2023); cached per user and
            per history snapshot, rewritten when the user's data changes.
        attributes: describe the user's stored attributes (age, occupation, ...) in words.
        summary_items: most recent history entries the summary is written from.
        summary_tokens: generation budget of the summary.
    """

    summary: bool = field(default=True, metadata={"help": "LLM-written summary of the history"})
    attributes: bool = field(default=True, metadata={"help": "attributes in natural language"})
    summary_items: int = field(default=12, metadata={"help": "recent entries summarized"})
    summary_tokens: int = field(default=80, metadata={"help": "summary generation budget"})

    def __post_init__(self) -> None:
        if not (self.summary or self.attributes):
            raise ValueError("at least one of summary or attributes must be true")
        if self.summary_items < 1:
            raise ValueError(f"summary_items must be >= 1, got {self.summary_items}")
        if self.summary_tokens < 8:
            raise ValueError(f"summary_tokens must be >= 8, got {self.summary_tokens}")

    def needs(self) -> set[Need]:
        return {"generator"} if self.summary else set()
