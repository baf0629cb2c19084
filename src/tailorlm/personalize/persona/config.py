"""Configuration of persona-level personalization."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailorlm.personalize.base import MethodConfig
from tailorlm.personalize.types import Need


@dataclass
class PersonaConfig(MethodConfig):
    """Serve the user as a member of a persona: a group of similar users in the population.

    Args:
        persona_by: a user attribute ("age_band", "occupation", "gender", ...) or "cluster"
            (k-means over embeddings of users' history; needs an embedder).
        n_clusters: personas to discover with "cluster".
        k: entries of the persona's pooled history to show (0: the description only).
        describe_with_llm: have the generator write each persona's description from a
            sample of its members' entries (stored as persona artifacts) instead of the
            template description.
    """

    persona_by: str = field(default="cluster", metadata={"help": "attribute name or 'cluster'"})
    n_clusters: int = field(default=8, metadata={"help": "personas to discover"})
    k: int = field(default=4, metadata={"help": "pooled persona entries in the prompt"})
    describe_with_llm: bool = field(default=False, metadata={"help": "LLM-written persona descriptions"})

    def __post_init__(self) -> None:
        if not self.persona_by:
            raise ValueError("persona_by must name an attribute or be 'cluster'")
        if self.n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {self.n_clusters}")
        if self.k < 0:
            raise ValueError(f"k must be >= 0, got {self.k}")

    def needs(self) -> set[Need]:
        # the embedder is asked for whatever persona_by says: clusters embed, and the
        # suites' persona rows share one lazily built embedder
        return {"embedder", "generator"} if self.describe_with_llm else {"embedder"}
