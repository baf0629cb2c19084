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

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tailorlm.data import Store

__all__ = ["EntrySource", "HistoryEntry", "load_history"]

_SOURCES = ("documents", "interactions", "facts", "both", "all")


EntrySource = Literal["document", "interaction", "fact"]


@dataclass(frozen=True, slots=True)
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
    # ``digest``'s memo: slots, not a __dict__, since a process keeps thousands of entries
    _digest: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def source_id(self) -> str:
        return self.entry_id.split(":", 1)[1]

    @property
    def digest(self) -> bytes:
        """128 bits over (user, id, title, text), each field length-prefixed, and whether the
        title is None: equal for equal entries only. Computed once per entry: cached entries
        (``load_history``) keep it, so keying an index by a history costs a join, not a hash
        of every text."""
        if self._digest is not None:
            return self._digest
        h = hashlib.blake2b(digest_size=16)
        for part in (self.user_id, self.entry_id, self.title or "", self.text):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        h.update(b"\x01" if self.title is not None else b"\x00")
        object.__setattr__(self, "_digest", h.digest())
        return self._digest  # type: ignore[return-value]


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

    Documents and interactions come from the store's per-process cache while the user's
    data version is unchanged (one version read instead of the rows; any write or deletion,
    by any process, changes it), then the filters below apply to them here.

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
        both += load_history(store, source="interactions", **kw)  # a second version read: ~0.1 ms
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
    skip_ids = set(exclude_ids)
    if source == "documents":
        entries = _cached(store, user_id, ("documents", doc_kind), lambda: _documents(store, user_id, doc_kind))
        only = None if only_doc_ids is None else set(only_doc_ids)
        if before is None and not skip_ids and not skip_items and only is None:
            return list(entries)
        return [
            e
            for e in entries
            if _eligible(e, before)
            and e.source_id not in skip_ids
            and (e.item_id is None or e.item_id not in skip_items)
            and (only is None or e.source_id in only)
        ]
    entries = _cached(store, user_id, ("interactions",), lambda: _interactions(store, user_id))
    return [e for e in entries if _eligible(e, before) and e.item_id not in skip_items and e.source_id not in skip_ids]


def _cached(
    store: Store, user_id: str, what: tuple[str | None, ...], load: Callable[[], Sequence[HistoryEntry]]
) -> Sequence[HistoryEntry]:
    """The user's whole history of one kind, from the store's cache while their data is
    unchanged (``Store.data_version``, read before the rows: see ``data._user_cache``)."""
    return store.user_cache.get(user_id, what, store.data_version(user_id=user_id), load)


def _eligible(e: HistoryEntry, before: int | None) -> bool:
    """The store's ``timestamp < before``: strict, and an undated entry is never before."""
    return before is None or (e.timestamp is not None and e.timestamp < before)


def _documents(store: Store, user_id: str, doc_kind: str | None) -> tuple[HistoryEntry, ...]:
    rows = store.get_document_rows(user_id=user_id, doc_kind=doc_kind)
    return tuple(
        HistoryEntry(f"doc:{doc_id}", user_id, text, kind, ts, rating, title, item_id, label=label)
        for doc_id, text, kind, ts, rating, title, item_id, label in rows
    )


def _interactions(store: Store, user_id: str) -> tuple[HistoryEntry, ...]:
    inters = store.get_interactions(user_id=user_id)
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
    return tuple(out)


def _genres(item) -> str | None:
    genres = item.attributes.get("genres") if item else None
    return ", ".join(map(str, genres)) if isinstance(genres, list) and genres else None
