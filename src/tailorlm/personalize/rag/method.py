"""RAG personalization: the user's most relevant past entries, with their own answers, in the prompt.

Each retrieved entry is shown with the user's answer for it (the rating they
gave, the title they wrote), which turns retrieval into personal few-shot
evidence. Cold start falls back user -> persona -> global (see granularity.py).
"""

from __future__ import annotations

from collections.abc import Callable

from tailorlm.models.base import Embedder
from tailorlm.personalize.base import BasePersonalizer, eligible_history
from tailorlm.personalize.granularity import Granularity
from tailorlm.personalize.rag.config import RagConfig
from tailorlm.personalize.types import ContextBlock, ContextItem, Contribution, Query
from tailorlm.retrieval import HistoryEntry, build_ranker
from tailorlm.tasks import Task, get_task

__all__ = ["RagPersonalizer", "entry_item"]


def _snippet(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def entry_item(entry: HistoryEntry, task: Task, *, score: float | None, snippet_chars: int) -> ContextItem:
    """A history entry as a context line: its text, and the user's answer as the label.

    A task with a ``history_format`` (LaMP's per-task profile formats) writes the answer
    inside the line; the label is still kept on the item for label-voting predictors. The
    entry's timestamp goes with the item (the line shows its date) unless the task opts out
    (``Task.dated_history``).
    """
    when = entry.timestamp if task.dated_history else None
    label = None
    if task.history_label in ("rating", "value") and entry.rating is not None:
        label = f"{entry.rating:g}"
    elif task.history_label == "title" and entry.title and entry.source != "interaction":
        label = _snippet(entry.title, 120)
    elif task.history_label == "label" and entry.label:
        label = entry.label
    text = _snippet(entry.text, snippet_chars)
    if task.history_format:
        title = _snippet(entry.title, 120) if entry.title else ""
        line = task.history_format.format(text=text, title=title, label=label or "", kind=entry.kind)
        return ContextItem(
            text=line, source_id=entry.entry_id, score=score, label=label, show_label=False, timestamp=when
        )
    if task.history_label != "title" and entry.title and entry.source == "document":
        text = f"{_snippet(entry.title, 120)}: {text}"
    return ContextItem(text=text, source_id=entry.entry_id, score=score, label=label, timestamp=when)


class RagPersonalizer(BasePersonalizer[RagConfig]):
    """Retrieve k entries of the user's history for the query and quote them in the prompt.

    Example:
        >>> from tailorlm.data import Document, Store
        >>> store = Store("sqlite://")
        >>> _ = store.add([Document(user_id="u", doc_kind="review", text="bright strings", rating=5, timestamp=1)])
        >>> rag = RagPersonalizer(RagConfig(k=1)).fit(store)
        >>> rag.personalize("u", Query("strings?", task="amazon-rating")).record.retrieved[0]["block"]
        'history'
    """

    name = "rag"
    config_cls = RagConfig

    def __init__(
        self,
        config: RagConfig | None = None,
        *,
        embedder: Embedder | None = None,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        super().__init__(config, token_counter=token_counter, budget_tokens=budget_tokens)
        self.embedder = embedder

    def _fit(self, store, users) -> None:
        cfg = self.config
        self.ranker_ = build_ranker(cfg.retriever, store=store, embedder=self.embedder, seed=cfg.seed)
        self.granularity_ = Granularity(
            persona_by=cfg.persona_by, min_user_items=cfg.min_user_items, embedder=self.embedder
        ).fit(store, users)

    def contribute(self, user_id: str, query: Query) -> Contribution:
        store = self._check_fitted()
        cfg = self.config
        task = get_task(query.task)
        own = eligible_history(store, user_id, query)
        decision = self.granularity_.decide(user_id, task, own=own, before=query.timestamp)
        hits = self.ranker_.rank(decision.entries, query=get_task(query.task).content_of(query.text), k=cfg.k)
        heading = {
            "user": "Some of this user's own past entries (with their answer after ->):",
            "persona": f"This user has little history; past entries of similar users ({decision.persona_id}):",
            "global": "This user has little history; past entries of other users:",
        }.get(decision.scope, "")
        items = tuple(entry_item(h.entry, task, score=h.score, snippet_chars=cfg.snippet_chars) for h in hits)
        blocks = [ContextBlock("history", heading, items, priority=1)] if items else []
        return Contribution(
            method=f"rag-{cfg.retriever}", blocks=blocks, scope=decision.scope, persona_id=decision.persona_id
        )

    def forget(self, user_id: str) -> None:
        """Also drop the ranker's cached indexes and vectors holding ``user_id``'s text."""
        super().forget(user_id)
        if (forget := getattr(getattr(self, "ranker_", None), "forget", None)) is not None:
            forget(user_id)
