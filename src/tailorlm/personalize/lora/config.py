"""Settings of LoRA personalization: which registered adapter serves a user, and how one is trained."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tailorlm.personalize.base import MethodConfig
from tailorlm.personalize.training.jobs import config_from_mapping
from tailorlm.personalize.types import Need

__all__ = ["LoraMethodConfig", "LoraTrainConfig", "with_history"]

_SCOPES = ("auto", "user", "persona", "global")


def with_history(variant: str, history: str | None, k: int | None) -> str:
    """The registry variant of an adapter trained with ``history`` in its prompts (RAG
    fine-tuning): ``"history=rag-bm25,k=4"``, after ``variant`` unless that is "default".

    One function for the trainer (the key it writes) and the method (the key it reads),
    so the two always agree; without history the variant is unchanged, so adapters
    trained before this option keep their keys.
    """
    if history is None:
        return variant
    tag = f"history={history}" + (f",k={k}" if k is not None else "")
    return tag if variant == "default" else f"{variant};{tag}"


def _check_history(owner: str, history: str | None, k: int | None) -> None:
    if history is not None and (not isinstance(history, str) or not history.strip()):
        raise ValueError(f"{owner}.history must be a method spec such as 'rag-bm25', got {history!r}")
    if k is not None and (history is None or k < 1):
        raise ValueError(f"{owner}.history_k needs a history spec and must be >= 1, got {k!r}")


@dataclass
class LoraMethodConfig(MethodConfig):
    """Which adapter to serve.

    Args:
        task: the adapters' task; None: the query's task.
        scope: "auto" (user -> persona -> global by the cold-start rule) or one fixed scope;
            "persona" falls back to global for a user with no persona yet (no history).
        min_user_items: eligible own history entries needed before a user adapter is served.
        persona_by: the persona attribute (or "cluster"); None: inferred from the
            registered persona adapters' ids ("gender=F" -> "gender").
        variant: the user adapters' variant ("default", or "init=global" for OPPU-style ones).
        adapter_method: the registry method name to look up (LoRA-family trainers may reuse this).
        if_missing: "error" (raise, naming the train command) or "skip" (serve the base model).
        cache_capacity: adapters kept loaded in the generator at once (LRU, ~2 MB each). An
            evaluation personalizes a whole batch before predicting, so this must exceed the
            number of distinct adapters one prediction batch needs.
        history / history_k: serve the adapters trained with this retrieval spec's history
            in their prompts (``LoraTrainConfig.history``, RAG fine-tuning) at every scope;
            pair it with the same retrieval in the spec (``lora-global+rag-bm25`` with
            ``history="rag-bm25"``), so the adapter sees the prompts it was trained on.
    """

    task: str | None = None
    scope: Literal["auto", "user", "persona", "global"] = "auto"
    min_user_items: int = 1
    persona_by: str | None = None
    variant: str = "default"
    adapter_method: str = "lora"
    if_missing: Literal["error", "skip"] = "error"
    cache_capacity: int = 64
    history: str | None = None
    history_k: int | None = None

    def __post_init__(self) -> None:
        _check_history("LoraMethodConfig", self.history, self.history_k)
        if self.scope not in _SCOPES:
            raise ValueError(f"LoraMethodConfig.scope must be one of {_SCOPES}, got {self.scope!r}")
        if self.if_missing not in ("error", "skip"):
            raise ValueError(f"LoraMethodConfig.if_missing must be 'error' or 'skip', got {self.if_missing!r}")
        if self.min_user_items < 0:
            raise ValueError(f"LoraMethodConfig.min_user_items must be >= 0, got {self.min_user_items}")
        if self.cache_capacity < 1:
            raise ValueError(f"LoraMethodConfig.cache_capacity must be >= 1, got {self.cache_capacity}")

    def needs(self) -> set[Need]:
        # persona adapters are found through the user's persona, clusters embed the history
        persona = self.scope in ("auto", "persona") and self.persona_by in (None, "cluster")
        return {"generator", "embedder"} if persona else {"generator"}


@dataclass(frozen=True)
class LoraTrainConfig:
    """Options of a LoRA job (``TrainJob.config``); defaults follow DESIGN.md's measurements."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 2e-4
    weight_decay: float = 0.0
    steps: int = 20
    batch_size: int = 4
    max_length: int = 256
    seed: int = 0
    balanced: bool = False  # class-balanced sampling for label tasks
    max_examples: int | None = None  # cap on training rows (a seeded sample)
    init_from: str | None = None  # "global": start from the task's global adapter
    variant: str | None = None  # default: "init=global" with init_from, else "default"
    before: int | None = None  # user scope: only examples strictly before this time
    exclude_latest: bool = True  # user scope without ``before``: hold out the latest example
    persona_by: str | None = None  # persona scope: default from the owner id "attr=value"
    n_clusters: int = 8
    # RAG fine-tuning: render each example with this retrieval spec's history of the same
    # user (e.g. "rag-bm25"), k entries (None: the spec's own k), under the prompt budget
    # the evaluation uses; stored under variant "history=<spec>[,k=<k>]" (see with_history).
    history: str | None = None
    history_k: int | None = None
    history_budget: int = 1024

    def __post_init__(self) -> None:
        checks = {
            "r": self.r >= 1,
            "alpha": self.alpha >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "lr": self.lr > 0,
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "max_length": self.max_length >= 8,
            "max_examples": self.max_examples is None or self.max_examples >= 1,
            "init_from": self.init_from in (None, "global"),
            "target_modules": bool(self.target_modules),
            "history_budget": self.history_budget >= 64,
        }
        _check_history("LoraTrainConfig", self.history, self.history_k)
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"LoraTrainConfig: invalid {bad[0]}={getattr(self, bad[0])!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LoraTrainConfig:
        return config_from_mapping(cls, data, tuples=("target_modules",))

    @property
    def key_variant(self) -> str:
        """The variant this job is stored under: ``variant`` when given, else from the options."""
        if self.variant:
            return self.variant
        return with_history("init=global" if self.init_from == "global" else "default", self.history, self.history_k)

    @property
    def global_variant(self) -> str:
        """The variant of the global adapter ``init_from="global"`` starts from: the one
        trained with the same history (none: the plain one)."""
        return with_history("default", self.history, self.history_k)
