"""Granularity: user, persona and global scope, and the cold-start fallback between them.

The survey's three granularities differ in whose data informs a user's output:
the user's own (user level), a group of similar users (persona level), or
everyone (global level). Here:

- The **population** is the set of users passed to ``fit``. Only the population's
  data is ever pooled for persona or global scope; a user outside it (a new or
  held-out user) is still served, from their own data plus pooled population
  data, never from another non-population user's rows.
- **Personas** are defined by a user attribute (``persona_by="age_band"``,
  "occupation", "gender", ...) or discovered by k-means over the mean embedding
  of each user's history (``persona_by="cluster"``). A new user gets the persona
  of their attribute value, or of the nearest centroid of their own embedding.
- **Fallback**: a user with at least ``min_user_items`` eligible entries is served
  at user scope; fewer and a persona is known: persona scope; otherwise global.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tailorlm.data import USER_ATTRIBUTES, Artifact, Store, TrainingManifest
from tailorlm.models.base import Embedder
from tailorlm.personalize.types import ServedScope
from tailorlm.retrieval import HistoryEntry, load_history
from tailorlm.tasks import Task

__all__ = ["Granularity", "ScopeDecision"]

# Text vectors shared by every Granularity that uses the same embedder object: fitting
# personas again (another task, a persona adapter's trainer, an evaluation row) must not
# embed the same population's history again; on 2 CPUs one pass over 10k reviews takes
# minutes. Keyed by the object (not its name), so two embedders never share vectors.
_MAX_SHARED_VECTORS = 200_000
_SHARED_VECTORS: weakref.WeakKeyDictionary[Any, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()


def _shared_text_vectors(embedder: Embedder | None) -> dict[str, np.ndarray]:
    if embedder is None:
        return {}
    try:
        return _SHARED_VECTORS.setdefault(embedder, {})
    except TypeError:  # not weak-referenceable: a private cache
        return {}


@dataclass(frozen=True)
class ScopeDecision:
    scope: ServedScope
    persona_id: str | None
    entries: list[HistoryEntry]  # the eligible entries at that scope


def _attribute(store: Store, user_id: str, name: str) -> str | None:
    user = store.get_user(user_id=user_id)
    if user is None:
        return None
    value = getattr(user, name) if name in USER_ATTRIBUTES else user.attributes.get(name)
    return None if value in (None, "") else str(value)


class Granularity:
    """Persona assignment and pooled population history, learned in ``fit``.

    Args:
        persona_by: a user attribute name, "cluster", or None (no personas: user -> global).
        n_clusters: personas to discover when ``persona_by="cluster"``.
        min_user_items: eligible own entries needed to be served at user scope.
        embedder: required for ``persona_by="cluster"``.
        seed: k-means seed.
    """

    def __init__(
        self,
        *,
        persona_by: str | None = None,
        n_clusters: int = 8,
        min_user_items: int = 1,
        embedder: Embedder | None = None,
        seed: int = 0,
    ) -> None:
        if persona_by == "cluster" and embedder is None:
            raise ValueError("persona_by='cluster' needs an embedder")
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        if min_user_items < 0:
            raise ValueError(f"min_user_items must be >= 0, got {min_user_items}")
        self.persona_by = persona_by
        self.n_clusters = n_clusters
        self.min_user_items = min_user_items
        self.embedder = embedder
        self.seed = seed

    def fit(self, store: Store, users: Sequence[str]) -> Granularity:
        self.store_ = store
        self.population_ = set(users)
        self.persona_of_: dict[str, str] = {}
        self._pools: dict[tuple[str | None, str], list[HistoryEntry]] = {}
        self._text_vectors = _shared_text_vectors(self.embedder)
        if self.persona_by == "cluster":
            self._fit_clusters(store, sorted(self.population_))
        elif self.persona_by is not None:
            for u in sorted(self.population_):
                if (v := _attribute(store, u, self.persona_by)) is not None:
                    self.persona_of_[u] = f"{self.persona_by}={v}"
        self.members_: dict[str, list[str]] = defaultdict(list)
        for u, p in self.persona_of_.items():
            self.members_[p].append(u)
        return self

    def _user_vector(self, store: Store, user_id: str, before: int | None = None) -> np.ndarray | None:
        texts = [e.text for e in load_history(store, user_id=user_id, before=before)]
        texts += [e.text for e in load_history(store, user_id=user_id, source="interactions", before=before)]
        if not texts:
            return None
        assert self.embedder is not None
        texts = texts[-50:]
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_vectors]
        if todo:  # users share items (POPQUORN comments, movies): embed each text once
            self._text_vectors.update(zip(todo, self.embedder.embed(todo), strict=True))
            while len(self._text_vectors) > _MAX_SHARED_VECTORS:  # oldest first
                self._text_vectors.pop(next(iter(self._text_vectors)))
        vec = np.mean([self._text_vectors[t] for t in texts], axis=0)
        return vec / (np.linalg.norm(vec) or 1.0)

    def _fit_clusters(self, store: Store, users: list[str]) -> None:
        from sklearn.cluster import KMeans

        vecs = {u: v for u in users if (v := self._user_vector(store, u)) is not None}
        if not vecs:
            self.centroids_ = np.zeros((0, 0), dtype=np.float32)
            return
        ids = list(vecs)
        k = min(self.n_clusters, len(ids))
        km = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(np.stack([vecs[u] for u in ids]))
        self.centroids_ = km.cluster_centers_.astype(np.float32)
        for u, label in zip(ids, km.labels_, strict=True):
            self.persona_of_[u] = f"cluster={int(label)}"

    def persona_of(self, user_id: str, *, before: int | None = None) -> str | None:
        """The user's persona: learned for the population, inferred for anyone else."""
        if user_id in self.persona_of_:
            return self.persona_of_[user_id]
        if self.persona_by is None:
            return None
        if self.persona_by == "cluster":
            if self.centroids_.size == 0 or (v := self._user_vector(self.store_, user_id, before)) is None:
                return None
            return f"cluster={int(np.argmax(self.centroids_ @ v))}"
        v = _attribute(self.store_, user_id, self.persona_by)
        pid = f"{self.persona_by}={v}" if v is not None else None
        return pid if pid in self.members_ else None

    def pooled(self, persona_id: str | None, task: Task, *, before: int | None = None) -> list[HistoryEntry]:
        """The population's history for ``task`` (one persona's members, or everyone)."""
        key = (persona_id, task.name)
        if key not in self._pools:
            members = self.members_.get(persona_id, []) if persona_id else sorted(self.population_)
            pool: list[HistoryEntry] = []
            for u in members:
                entries = load_history(self.store_, user_id=u, source=task.history_source, doc_kind=task.history_kind)
                # Memory facts are private statements about one person, never population evidence.
                pool += [e for e in entries if e.kind != "fact"]
            self._pools[key] = pool
        pool = self._pools[key]
        return pool if before is None else [e for e in pool if e.timestamp is not None and e.timestamp < before]

    def decide(self, user_id: str, task: Task, *, own: list[HistoryEntry], before: int | None) -> ScopeDecision:
        """Serve at user scope when the user has enough own entries, else fall back."""
        if len(own) >= self.min_user_items and own:
            return ScopeDecision("user", self.persona_of(user_id, before=before), own)
        persona = self.persona_of(user_id, before=before)
        if persona is not None:
            pool = [e for e in self.pooled(persona, task, before=before) if e.user_id != user_id]
            if pool:
                return ScopeDecision("persona", persona, pool)
        pool = [e for e in self.pooled(None, task, before=before) if e.user_id != user_id]
        if pool:
            return ScopeDecision("global", persona, pool)
        # Nobody to borrow from: the user's own few entries are still better than nothing.
        return ScopeDecision("user" if own else "none", persona, own)

    def describe(self, persona_id: str) -> str:
        """A natural-language description of a persona (stored descriptions win)."""
        art = self.store_.get_artifact(scope="persona", owner=persona_id, kind="persona")
        if art is not None and art.payload.get("description"):
            return str(art.payload["description"])
        attr, _, value = persona_id.partition("=")
        n = len(self.members_.get(persona_id, []))
        if attr == "cluster":
            return f"one of {n} users whose history is similar to theirs (group {value})"
        return f"one of {n} users with {attr.replace('_', ' ')} {value}"

    def save_descriptions(
        self,
        descriptions: dict[str, str],
        *,
        model: str | None = None,
        manifests: Mapping[str, TrainingManifest] | None = None,
    ) -> None:
        """Store persona descriptions; ``manifests`` (per persona) say whose entries wrote them."""
        for pid, text in descriptions.items():
            self.store_.put_artifact(
                Artifact(
                    scope="persona",
                    owner=pid,
                    kind="persona",
                    model=model,
                    payload={"description": text, "members": len(self.members_[pid])},
                ),
                manifest=(manifests or {}).get(pid),
            )
