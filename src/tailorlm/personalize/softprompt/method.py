"""Soft-prompt personalization (PPlug): the user's history, pooled and projected, as input embeddings.

Nothing is trained per user: one projector per task (trained offline by
``tailorlm train --method softprompt --scope global --task T``, stored in the adapter
registry) maps any user's history vector to a few soft tokens that the local generator
prepends to the prompt. So a new user is served as soon as they have history, and
forgetting a user means dropping their cached vectors. The contribution carries no
prompt text, which is why it composes with RAG (``softprompt+rag-bm25``): the soft
prompt says who the user is, the retrieved entries say what they did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tailorlm.errors import NoProjectorError
from tailorlm.models.base import Embedder
from tailorlm.personalize.base import BasePersonalizer
from tailorlm.personalize.softprompt.config import SoftPromptConfig
from tailorlm.personalize.softprompt.projector import ProjectorSpec, UserVectors, load_projector, project
from tailorlm.personalize.types import Contribution, Query

__all__ = ["SOFTPROMPT_METHOD", "SoftPromptPersonalizer", "train_hint"]

SOFTPROMPT_METHOD = "softprompt"


def train_hint(task: str, base_model: str) -> str:
    return (
        f"no soft-prompt projector for task {task!r} on base model {base_model!r}; "
        f"train one with: tailorlm train --method softprompt --scope global --task {task}"
    )


@dataclass
class _Loaded:
    module: Any
    spec: ProjectorSpec
    name: str  # the registry record's name: changes whenever the projector is retrained


class SoftPromptPersonalizer(BasePersonalizer[SoftPromptConfig]):
    """Contribute ``projector(user vector)`` as a soft prompt; see the module docstring.

    Needs the local generator (``generator=``: its fingerprint finds the projector and
    its hidden size must match) and an embedder (``embedder=``; default: the packaged
    MiniLM, built on first use).
    """

    name = SOFTPROMPT_METHOD
    config_cls = SoftPromptConfig

    def __init__(
        self,
        config: SoftPromptConfig | None = None,
        *,
        generator: Any | None = None,
        embedder: Embedder | None = None,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        super().__init__(config, token_counter=token_counter, budget_tokens=budget_tokens)
        self.generator = generator
        self.embedder = embedder

    def _fit(self, store, users) -> None:
        from tailorlm.adapters import AdapterRegistry
        from tailorlm.models.base import model_fingerprint

        cfg = self.config
        if self.generator is None:
            raise ValueError("softprompt needs the generator it serves (build it with generator=...)")
        self.base_model_ = model_fingerprint(self.generator)
        registry = AdapterRegistry(store, base_model=self.base_model_)
        self.projectors_: dict[str, _Loaded] = {}
        for rec in registry.list(method=SOFTPROMPT_METHOD, scope="global"):
            if rec.key.variant != cfg.variant:
                continue
            module, spec = load_projector(rec.path)
            hidden = self._hidden_size()
            if spec.d_model != hidden:
                raise ValueError(
                    f"projector {rec.name} makes {spec.d_model}-d tokens but the generator's hidden size is {hidden}"
                )
            self.projectors_[rec.key.task] = _Loaded(module, spec, rec.name)
        if not self.projectors_ and cfg.if_missing == "error":
            raise NoProjectorError(train_hint("<task>", self.base_model_) + " (no projector is registered at all)")
        self.vectors_: UserVectors | None = None

    def _hidden_size(self) -> int:
        base = getattr(self.generator, "base_model", None)
        if base is None or not hasattr(base, "get_input_embeddings"):
            raise TypeError(
                f"softprompt needs a local TransformersGenerator (soft prompts are input embeddings), "
                f"got {type(self.generator).__name__}"
            )
        return int(base.get_input_embeddings().weight.shape[1])

    def _user_vectors(self, spec: ProjectorSpec) -> UserVectors:
        if self.vectors_ is None:
            if self.embedder is None:
                from tailorlm.models import SentenceTransformerEmbedder

                self.embedder = SentenceTransformerEmbedder()
            self.vectors_ = UserVectors(self._check_fitted(), self.embedder)
        if self.vectors_.embedder.name != spec.embedder:
            raise ValueError(
                f"the projector was trained on {spec.embedder!r} vectors but the embedder is "
                f"{self.vectors_.embedder.name!r}; pass embedder= of the same model"
            )
        return self.vectors_

    def contribute(self, user_id: str, query: Query) -> Contribution:
        self._check_fitted()
        cfg = self.config
        loaded = self.projectors_.get(query.task)
        info: dict[str, Any] = {"method": self.name, "projector": None, "history_items": 0}
        if loaded is None:
            if cfg.if_missing == "error":
                raise NoProjectorError(train_hint(query.task, self.base_model_))
            return Contribution(method=self.name, soft_prompt_info={**info, "reason": "no projector for this task"})
        info["projector"] = loaded.name
        vector, ids = self._user_vectors(loaded.spec)(user_id, query, loaded.spec)
        if vector is None:  # nothing eligible to say who the user is: the plain prompt
            return Contribution(method=self.name, soft_prompt_info={**info, "reason": "no eligible history"})
        import torch

        with torch.no_grad():
            soft = project(loaded.module, loaded.spec, vector[None])[0]
        info.update(history_items=len(ids), history_ids=ids, n_tokens=loaded.spec.n_tokens)
        return Contribution(method=self.name, scope="user", soft_prompt=soft, soft_prompt_info=info)

    def forget(self, user_id: str) -> None:
        """Also drop the user's cached history vectors (the store's rows go with ``delete_user``)."""
        super().forget(user_id)
        if getattr(self, "vectors_", None) is not None:
            self.vectors_.forget(user_id)
