"""PPlug's two pieces outside the LLM: the user vector and the projector.

*User vector* (Liu et al. 2024, "LLMs + Persona-Plug"): each eligible history entry of
the user (with the user's own answer attached, e.g. "review text -> title") is embedded
by the sentence embedder, and the vectors are pooled into one, either weighted by their
similarity to the query (PPlug's input-aware pooling: the history that matters for this
request counts most) or by a plain mean. Entries come from
:func:`~tailorlm.personalize.base.eligible_history`, so the query's own target and
anything after the query's time never contribute. Vectors are cached in the store the
way dense RAG caches them (:class:`~tailorlm.retrieval.dense.DenseRanker`), under ids of
their own because the embedded text differs from RAG's.

*Projector*: a small MLP from the embedder's space to ``n_tokens`` input embeddings of
the LLM (the soft prompt). It is the only trained part; one projector serves every user,
new ones included, because a user is represented by their history, not by trained
weights.

torch is imported inside functions: importing the personalize package stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tailorlm.personalize.base import eligible_history
from tailorlm.personalize.types import Query
from tailorlm.retrieval.history import HistoryEntry

if TYPE_CHECKING:
    from tailorlm.data import Store
    from tailorlm.models.base import Embedder

__all__ = [
    "POOLINGS",
    "PROJECTOR_CONFIG",
    "PROJECTOR_WEIGHTS",
    "ProjectorSpec",
    "UserVectors",
    "build_projector",
    "load_projector",
    "project",
    "save_projector",
]

POOLINGS = ("attention", "mean")
PROJECTOR_WEIGHTS = "projector.safetensors"
PROJECTOR_CONFIG = "projector.json"


@dataclass(frozen=True)
class ProjectorSpec:
    """Shape of a projector and how its input vectors are made.

    Saved beside the weights, because serving must build user vectors exactly as
    training did (same embedder, pooling, temperature, number of history items).
    """

    embed_dim: int
    hidden: int
    n_tokens: int
    d_model: int
    embedder: str  # name of the embedder whose vectors it was trained on
    task: str
    pooling: str = "attention"
    temperature: float = 0.1  # softmax temperature of the input-aware pooling
    max_items: int = 32  # the most recent eligible entries pooled

    def __post_init__(self) -> None:
        for name in ("embed_dim", "hidden", "n_tokens", "d_model", "max_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ProjectorSpec.{name} must be an int >= 1, got {value!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"ProjectorSpec.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not self.temperature > 0:
            raise ValueError(f"ProjectorSpec.temperature must be > 0, got {self.temperature!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_projector(spec: ProjectorSpec, *, seed: int | None = None) -> Any:
    """A fresh MLP ``embed_dim -> hidden -> n_tokens * d_model`` (a ``torch.nn.Module``)."""
    import torch
    from torch import nn

    if seed is not None:
        torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(spec.embed_dim, spec.hidden),
        nn.GELU(),
        nn.Linear(spec.hidden, spec.n_tokens * spec.d_model),
    )


def project(module: Any, spec: ProjectorSpec, vectors: Any) -> Any:
    """Soft prompts for user vectors: (n, embed_dim) -> (n, n_tokens, d_model); keeps gradients."""
    import torch

    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32)) if not torch.is_tensor(vectors) else vectors
    if x.ndim != 2 or x.shape[1] != spec.embed_dim:
        raise ValueError(f"user vectors must be (n, {spec.embed_dim}), got {tuple(x.shape)}")
    # unit-norm sentence vectors have entries ~1/sqrt(dim); rescale to ~1 for the MLP's init
    return module(x * math.sqrt(spec.embed_dim)).view(x.shape[0], spec.n_tokens, spec.d_model)


def save_projector(module: Any, spec: ProjectorSpec, folder: Path) -> None:
    """Weights as safetensors (no pickle) plus the spec as JSON."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, folder / PROJECTOR_WEIGHTS)
    (folder / PROJECTOR_CONFIG).write_text(json.dumps(spec.to_dict(), indent=1))


def load_projector(folder: Path) -> tuple[Any, ProjectorSpec]:
    """The projector saved in ``folder`` (in eval mode) and its spec."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / PROJECTOR_WEIGHTS).is_file() or not (folder / PROJECTOR_CONFIG).is_file():
        raise FileNotFoundError(f"{folder} holds no soft-prompt projector ({PROJECTOR_WEIGHTS} + {PROJECTOR_CONFIG})")
    spec = ProjectorSpec(**json.loads((folder / PROJECTOR_CONFIG).read_text()))
    module = build_projector(spec)
    module.load_state_dict(load_file(folder / PROJECTOR_WEIGHTS))
    return module.eval(), spec


def _entry_text(entry: HistoryEntry, label_field: str | None) -> str:
    """The entry as the user produced it: text plus their own answer (rating or title)."""
    text = " ".join(entry.text.split())[:1000]
    if label_field in ("rating", "value") and entry.rating is not None:
        return f"{text} -> {entry.rating:g}"
    if label_field == "title" and entry.title and entry.source != "interaction":
        return f"{text} -> {entry.title}"
    return text


class UserVectors:
    """Builds PPlug user vectors from a user's eligible history (vectors cached in the store)."""

    ID_PREFIX = "softprompt|"  # cached vectors' ids: their text differs from RAG's plain entries

    def __init__(self, store: Store, embedder: Embedder) -> None:
        from tailorlm.retrieval.dense import DenseRanker

        self.store = store
        self.embedder = embedder
        self._ranker = DenseRanker(embedder, store=store)

    def entries(self, user_id: str, query: Query, *, max_items: int) -> list[HistoryEntry]:
        """The eligible entries that build the vector: the ``max_items`` most recent ones."""
        from tailorlm.tasks import get_task

        label_field = get_task(query.task).history_label
        own = [e for e in eligible_history(self.store, user_id, query) if e.kind != "fact"]
        own = own[-max_items:]
        return [
            dataclasses.replace(e, entry_id=self.ID_PREFIX + e.entry_id, text=_entry_text(e, label_field)) for e in own
        ]

    def __call__(self, user_id: str, query: Query, spec: ProjectorSpec) -> tuple[np.ndarray | None, list[str]]:
        """(user vector or None when there is no eligible history, ids of the entries used)."""
        entries = self.entries(user_id, query, max_items=spec.max_items)
        if not entries:
            return None, []
        mat = self._ranker.vectors(entries)
        if spec.pooling == "mean":
            weights = np.full(len(entries), 1.0 / len(entries), dtype=np.float32)
        else:
            q = np.asarray(self.embedder.embed([query.text])[0], dtype=np.float32)
            scores = (mat @ q) / spec.temperature
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
        ids = [e.entry_id[len(self.ID_PREFIX) :] for e in entries]
        return (weights @ mat).astype(np.float32), ids

    def forget(self, user_id: str) -> None:
        self._ranker.forget(user_id)
