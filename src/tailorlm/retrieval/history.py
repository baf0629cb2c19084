"""A user's history as uniform entries that any ranker can score.

Documents (reviews, posts, messages) and interactions (ratings of items) are
both "history": a text to match against (the document, or the item's title and
text) and the user's own answer for it (the rating, the title they wrote). One
entry type lets BM25, dense, hybrid, recency and random rankers serve text
datasets (Amazon, LaMP) and interaction datasets (MovieLens, POPQUORN) alike.
Memory facts (``tailorlm.memory``) are history too: only currently valid facts,
so contradicted and forgotten ones are never retrieved. "both" deliberately
leaves them out and "all" adds them, because facts are private to their user:
code that pools other users' history (persona and global scopes) must drop
entries of kind "fact".

Leakage guards live here, once: only entries strictly before ``before`` and
none of ``exclude_ids`` (document ids) or ``exclude_items`` (the query's item).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tailorlm.data import Store

__all__ = ["EntrySource", "HistoryEntry", "load_history"]

_SOURCES = ("documents", "interactions", "facts", "both", "all")


EntrySource = Literal["document", "interaction", "fact"]


@dataclass(frozen=True)
class HistoryEntry:
    """One past document, interaction or memory fact of one user.

    ``source`` says which; code branches on it, never on the id. ``entry_id`` stays unique
    across sources ("doc:<doc_id>", "int:<interaction_id>", "fact:<fact_id>") because vector
    caches and usage records key on it.
    """

    entry_id: str
    user_id: str
    text: str  # what rankers match against
    kind: str  # doc_kind, or the interaction kind
    timestamp: int | None = None  # when it was written / happened; context lines show its date
    rating: float | None = None  # the user's rating / value, if any
    title: str | None = None  # the user's title (documents), or the item's title (interactions)
    item_id: str | None = None
    source: EntrySource = "document"
    label: str | None = None  # the user's categorical answer for a document (a LaMP-2 tag)

    @property
    def source_id(self) -> str:
        return self.entry_id.split(":", 1)[1]


def load_history(
    store: Store,
    *,
    user_id: str,
    source: Literal["documents", "interactions", "facts", "both", "all"] = "documents",
    doc_kind: str | None = None,
    before: int | None = None,
    exclude_ids: Sequence[str] = (),
    exclude_items: Sequence[str] = (),
    only_doc_ids: Sequence[str] | None = None,
) -> list[HistoryEntry]:
    """The user's eligible history, oldest first; reads only ``user_id``'s rows.

    ``source``: documents | interactions | facts (valid memory facts) | both (documents
    and interactions) | all (both and facts). ``only_doc_ids`` (when not None) keeps only
    those documents: a query that brings its own profile (LaMP) sees exactly it, never the
    user's documents of other queries.
    """
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
    if source in ("both", "all"):
        kw = {
            "user_id": user_id,
            "before": before,
            "exclude_ids": exclude_ids,
            "exclude_items": exclude_items,
            "only_doc_ids": only_doc_ids,
        }
        both = load_history(store, source="documents", doc_kind=doc_kind, **kw)
        both += load_history(store, source="interactions", **kw)
        if source == "all":
            both += load_history(store, source="facts", **kw)
        return sorted(both, key=lambda e: (e.timestamp is None, e.timestamp or 0))
    if source == "facts":
        skip = set(exclude_ids)
        return [
            HistoryEntry(f"fact:{f.fact_id}", user_id, f.text, "fact", f.valid_from, source="fact")
            for f in store.get_facts(user_id=user_id, valid_only=True)
            if f.fact_id not in skip and (before is None or f.valid_from < before)
        ]
    skip_items = set(exclude_items)
    if source == "documents":
        rows = store.get_document_rows(user_id=user_id, doc_kind=doc_kind, before=before, exclude_ids=exclude_ids)
        only = None if only_doc_ids is None else set(only_doc_ids)
        return [
            HistoryEntry(f"doc:{doc_id}", user_id, text, kind, ts, rating, title, item_id, label=label)
            for doc_id, text, kind, ts, rating, title, item_id, label in rows
            if (item_id is None or item_id not in skip_items) and (only is None or doc_id in only)
        ]
    inters = [
        i
        for i in store.get_interactions(user_id=user_id, before=before)
        if i.item_id not in skip_items and i.interaction_id not in exclude_ids
    ]
    items = store.get_items([i.item_id for i in inters])
    out = []
    for i in inters:
        item = items.get(i.item_id)
        title = item.title if item else None
        text = " ".join(p for p in (title, item.text if item else None, _genres(item)) if p) or i.item_id
        out.append(
            HistoryEntry(
                f"int:{i.interaction_id}",
                user_id,
                text,
                i.interaction,
                i.timestamp,
                i.value,
                title,
                i.item_id,
                source="interaction",
            )
        )
    return out


def _genres(item) -> str | None:
    genres = item.attributes.get("genres") if item else None
    return ", ".join(map(str, genres)) if isinstance(genres, list) and genres else None
