"""Persona-level personalization: the user's group, described and exemplified.

The persona is learned from the population (users passed to ``fit``); the
prompt gets the persona's description and the k pooled entries of its members
most relevant to the query (never the requesting user's own, never anyone
outside the population).

A description written by the generator (``describe_with_llm``) is stored as an artifact
(kind ``persona``) and quotes a sample of members' entries, so it is stored with a
training manifest (the members, and whose entries the sample used): deleting one of
those users marks it stale, and :func:`rebuild_description` writes it again without them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tailorlm.data import Artifact, Store, TrainingManifest
from tailorlm.models.base import Embedder, GenerationConfig, Generator
from tailorlm.personalize.base import BasePersonalizer
from tailorlm.personalize.granularity import Granularity
from tailorlm.personalize.persona.config import PersonaConfig
from tailorlm.personalize.rag.method import entry_item
from tailorlm.personalize.types import ContextBlock, ContextItem, Contribution, Query
from tailorlm.retrieval import BM25Ranker
from tailorlm.tasks import get_task

__all__ = ["BUILDER_DESCRIPTION", "PersonaPersonalizer", "describe_members", "rebuild_description"]

#: ``options["builder"]`` of a persona description's manifest (see :func:`rebuild_description`).
BUILDER_DESCRIPTION = "persona-description"
_SAMPLE_MEMBERS = 8


def describe_members(store: Store, generator: Generator, members: Sequence[str]) -> tuple[str, dict[str, int]]:
    """One generator call describing a group from a sample of its members' entries: the text
    ("" when the model said nothing) and how many entries of each member the prompt quoted."""
    from tailorlm.retrieval import load_history

    head = list(members)[:_SAMPLE_MEMBERS]
    sample = [e for u in head for e in load_history(store, user_id=u)[-2:]]
    sample += [e for u in head for e in load_history(store, user_id=u, source="interactions")[-2:]]
    used = sample[:16]
    lines = "\n".join(f"- {' '.join(e.text.split())[:160]}" for e in used) or "- (no entries)"
    msgs = [
        {
            "role": "user",
            "content": f"Entries written or rated by a group of users:\n{lines}\n\n"
            "In one sentence, describe what this group of users is like.",
        }
    ]
    (text,) = generator.generate([msgs], config=GenerationConfig(max_new_tokens=48))
    return text.strip(), dict(Counter(e.user_id for e in used))


def description_manifest(
    members: Sequence[str], used: Mapping[str, int], options: Mapping[str, Any], *, excluded: int = 0
) -> TrainingManifest:
    """Every member (0 rows: in the group, not quoted) plus the quoted entries per member."""
    users = {**dict.fromkeys(members, 0), **used}
    return TrainingManifest(users=users, options={**options, "builder": BUILDER_DESCRIPTION}, excluded=excluded)


def rebuild_description(
    store: Store, generator: Generator, persona_id: str, members: Sequence[str], options: Mapping[str, Any],
    *, excluded: int = 0,
) -> str:  # fmt: skip
    """Describe ``persona_id`` again from ``members`` (a stale description's members minus the
    deleted ones) and store it with a fresh manifest; the text."""
    text, used = describe_members(store, generator, sorted(members))
    text = text or f"one of {len(members)} users of group {persona_id}"
    store.put_artifact(
        Artifact(
            scope="persona", owner=persona_id, kind="persona", model=getattr(generator, "name", None),
            payload={"description": text, "members": len(members)},
        ),
        manifest=description_manifest(sorted(members), used, options, excluded=excluded),
    )  # fmt: skip
    return text


class PersonaPersonalizer(BasePersonalizer[PersonaConfig]):
    """Adds the persona's description and pooled examples; reports scope 'persona'."""

    name = "persona"
    config_cls = PersonaConfig

    def __init__(
        self,
        config: PersonaConfig | None = None,
        *,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        super().__init__(config, token_counter=token_counter, budget_tokens=budget_tokens)
        cfg = self.config
        if cfg.persona_by == "cluster" and embedder is None:
            raise ValueError("PersonaConfig(persona_by='cluster') needs an embedder")
        if cfg.describe_with_llm and generator is None:
            raise ValueError("PersonaConfig(describe_with_llm=True) needs a generator")
        self.embedder = embedder
        self.generator = generator

    def _fit(self, store, users) -> None:
        cfg = self.config
        self.granularity_ = Granularity(
            persona_by=cfg.persona_by, n_clusters=cfg.n_clusters, embedder=self.embedder, min_user_items=0
        ).fit(store, users)
        self.ranker_ = BM25Ranker()
        if cfg.describe_with_llm:
            self._describe_personas()

    def _describe_personas(self) -> None:
        """One generator call per persona, from a sample of members' documents; each stored
        with its manifest (see the module docstring)."""
        descriptions: dict[str, str] = {}
        manifests: dict[str, TrainingManifest] = {}
        assert self.generator is not None
        cfg = self.config
        options = {"persona_by": cfg.persona_by, "n_clusters": cfg.n_clusters}
        for pid, members in sorted(self.granularity_.members_.items()):
            text, used = describe_members(self.store_, self.generator, members)
            descriptions[pid] = text or self.granularity_.describe(pid)
            manifests[pid] = description_manifest(members, used, options)
        self.granularity_.save_descriptions(
            descriptions, model=getattr(self.generator, "name", None), manifests=manifests
        )

    def contribute(self, user_id: str, query: Query) -> Contribution:
        self._check_fitted()
        cfg = self.config
        task = get_task(query.task)
        persona = self.granularity_.persona_of(user_id, before=query.timestamp)
        if persona is None:
            return Contribution(method=self.name)
        blocks = [
            ContextBlock(
                "persona",
                "This user belongs to a group of similar users:",
                (ContextItem(f"The user is {self.granularity_.describe(persona)}.", source_id=f"persona:{persona}"),),
                priority=2,
            )
        ]
        if cfg.k:
            # Other members' answers for the very same item are the persona's signal
            # (e.g. how the group rated this comment); only the user's own rows are excluded.
            pool = [e for e in self.granularity_.pooled(persona, task, before=query.timestamp) if e.user_id != user_id]
            hits = self.ranker_.rank(pool, query=get_task(query.task).content_of(query.text), k=cfg.k)
            items = tuple(entry_item(h.entry, task, score=h.score, snippet_chars=300) for h in hits)
            if items:
                blocks.append(ContextBlock("persona-examples", "Entries of similar users (answer after ->):", items))
        return Contribution(method=f"persona-{cfg.persona_by}", blocks=blocks, scope="persona", persona_id=persona)
