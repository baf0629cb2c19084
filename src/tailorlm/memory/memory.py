"""Conversational memory: facts about a user, extracted from what they say, kept honest over time.

``observe`` reads one turn (only the user's own messages, and of those only the ones it
has not read before plus the newest, since clients resend the whole conversation), applies
any forget request in it, extracts candidate facts, and compares them with the user's
valid facts: repeats are counted, contradictions close the old fact (``valid_to``) and add
the new one. Forgotten facts leave tombstones, so resent history cannot restore them. Facts are
ordinary user data in the store, so retrieval (``load_history(source="facts")``),
export and ``delete_user`` cover them like everything else.

Concurrency: extraction (the slow, model-bound part) runs outside any lock; the short
read-compare-write of one user is serialized by a per-user lock stripe, and every store
call is its own transaction. A new fact is written before the fact it contradicts is
closed, so a concurrent reader may briefly see both, never neither. Across processes
(no shared lock): fact ids are derived from the fact and the user's existing ids, so two
writers of the same fact upsert one row, and every writer settles contradictions left
open by a concurrent one (``update.settle``), the later fact winning.

Not here: running in the background (``tailorlm.serve.memory_worker``).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tailorlm.data.derived import Fact
from tailorlm.data.store import Store
from tailorlm.memory.config import MemoryConfig
from tailorlm.memory.extract import Extractor
from tailorlm.memory.rules import Clause, ForgetRequest, keys_for_phrase, parse_clause, parse_forget, split_clauses
from tailorlm.memory.schema import Candidate, norm_text
from tailorlm.memory.update import fact_order, plan_update, settle
from tailorlm.models.base import Embedder, Generator, Messages, normalize_messages

__all__ = ["Memory", "MemoryUpdate"]

_STRIPES = 64


@dataclass(frozen=True)
class MemoryUpdate:
    """What one :meth:`Memory.observe` changed for one user.

    ``invalidated`` holds the closed facts as they now are (``valid_to`` set);
    ``duplicates`` the ids of known facts the turn stated again; ``forgotten`` the facts
    deleted because the user asked; ``method`` the extraction path that ran
    (``constrained``, ``json``, ``rules``, or ``none`` when nothing needed extracting).
    """

    user_id: str
    added: list[Fact] = field(default_factory=list)
    invalidated: list[Fact] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    forgotten: list[Fact] = field(default_factory=list)
    method: Literal["constrained", "json", "rules", "none"] = "none"
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.invalidated or self.forgotten)


class Memory:
    """Facts about users, extracted from their conversations.

    Args:
        store: where facts live (``Store.add_fact`` / ``get_facts`` / ``invalidate_fact`` / ``delete_fact``).
        generator: the model used for extraction; None uses the rules only.
        config: a :class:`MemoryConfig` (default settings if None).
        embedder: optional; near-duplicate statements ("I love jazz" / "I really like jazz
            music") are then recognised by meaning as well as by key and text.

    Example:
        >>> from tailorlm.data import Store
        >>> mem = Memory(Store("sqlite://"), None)
        >>> mem.observe("u1", [{"role": "user", "content": "I live in Lyon."}]).added[0].text
        'I live in Lyon'
        >>> upd = mem.observe("u1", [{"role": "user", "content": "I moved to Paris"}])
        >>> [f.text for f in upd.added], [f.text for f in upd.invalidated]
        (['I live in Paris'], ['I live in Lyon'])
        >>> mem.forget("u1", text="where I live"), mem.facts("u1")
        (2, [])
    """

    def __init__(
        self,
        store: Store,
        generator: Generator | None = None,
        *,
        config: MemoryConfig | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.store = store
        self.generator = generator
        self.config = config if config is not None else MemoryConfig()
        self.embedder = embedder
        self.extractor = Extractor(generator, self.config)
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    def _lock(self, user_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(user_id.encode("utf-8")) % _STRIPES]

    # -- reading ----------------------------------------------------------------------------

    def facts(self, user_id: str, include_invalid: bool = False) -> list[Fact]:
        """The user's facts, oldest first; closed (contradicted) ones only if ``include_invalid``."""
        return self.store.get_facts(user_id=_check_user(user_id), valid_only=not include_invalid)

    # -- observing --------------------------------------------------------------------------

    def observe(self, user_id: str, messages: Messages) -> MemoryUpdate:
        """Learn from one conversation turn (or more) of ``user_id``.

        Only messages with role ``user`` are read: the assistant's words are never facts
        about the user. A forget request in the turn ("please forget where I live") is
        applied before new facts are added.

        Raises:
            ValueError: an empty ``user_id`` or malformed messages.
        """
        user_id = _check_user(user_id)
        turns = [m["content"] for m in normalize_messages(messages) if m["role"] == "user"]
        with self._lock(user_id):
            seen = set(self._state(user_id, _SEEN))
        # Clients resend the whole conversation each turn: read only what this memory has not
        # read before, and the last user message, which is the new turn by definition.
        said = [t for i, t in enumerate(turns) if i == len(turns) - 1 or _turn_hash(t) not in seen]
        latest = {c.text for c in split_clauses(turns[-1:])}
        clauses: list[Clause] = []
        forget: list[ForgetRequest] = []
        for clause in split_clauses(said):
            request = parse_forget(clause)
            if request is not None:
                forget.append(request)
            else:
                clauses.append(clause)
        forgotten: list[Fact] = []
        if forget:
            with self._lock(user_id):
                forgotten = self._delete(user_id, [f for r in forget for f in self._matching(user_id, r)])
        if not clauses:
            self._mark_seen(user_id, turns)
            return MemoryUpdate(user_id, forgotten=forgotten)
        extracted = self.extractor.extract(clauses)
        now = int(time.time())
        with self._lock(user_id):
            candidates = self._past_tombstones(user_id, extracted.candidates, latest)
            everything = self.store.get_facts(user_id=user_id, valid_only=False)
            plan = plan_update(
                [f for f in everything if f.is_valid],
                candidates,
                config=self.config,
                similarity=self._similarity if self.embedder is not None else None,
            )
            taken = {f.fact_id for f in everything}
            added = []
            for cand in plan.add:
                fact = self._fact(user_id, cand, taken, now)
                self.store.add_fact(fact)
                added.append(fact)
            # Only what is older than the fact that replaces it: a concurrent process may have
            # written a later fact of the key since this plan's read; then settle closes ours.
            newest = {f.metadata["key"]: fact_order(f) for f in added}
            older = [f for f in plan.invalidate if fact_order(f) < newest.get(f.metadata.get("key"), (now + 1, 0, ""))]
            closed = self._close(user_id, older, now)
            if added:  # another process may have written this user's facts meanwhile
                closed += self._close(user_id, settle(self.store.get_facts(user_id=user_id), self.config), now)
        self._mark_seen(user_id, turns)
        return MemoryUpdate(
            user_id, added, closed, plan.duplicates, forgotten, extracted.method, list(extracted.errors)
        )

    def _close(self, user_id: str, facts: Sequence[Fact], now: int) -> list[Fact]:
        return [
            f.model_copy(update={"valid_to": now})
            for f in facts
            if self.store.invalidate_fact(user_id=user_id, fact_id=f.fact_id, at=now)
        ]

    def _fact(self, user_id: str, cand: Candidate, taken: set[str], now: int) -> Fact:
        base = hashlib.sha1(f"{cand.key}\x1f{cand.norm_value}\x1f{cand.negated}".encode()).hexdigest()[:16]
        fact_id, n = base, 1
        while fact_id in taken:  # the same fact stated again after it was closed: a new period, a new row
            fact_id, n = f"{base}-{n}", n + 1
        taken.add(fact_id)
        by_model = cand.extractor != "rules"
        return Fact(
            user_id=user_id,
            fact_id=fact_id,
            text=cand.text,
            valid_from=now,
            source=self.config.source,
            model=getattr(self.generator, "name", None) if by_model else None,
            metadata={
                "seq": time.time_ns(),  # orders two statements of the same second (update.fact_order)
                "key": cand.key,
                "value": cand.value,
                "negated": cand.negated,
                "said": cand.said,
                "extractor": cand.extractor,
                **({"label": cand.label} if cand.label else {}),
            },
        )

    def _similarity(self, new: Sequence[str], known: Sequence[str]) -> list[list[float]]:
        vecs = self.embedder.embed([*new, *known])  # type: ignore[union-attr]
        return (vecs[: len(new)] @ vecs[len(new) :].T).tolist()

    # -- forgetting -------------------------------------------------------------------------

    def forget(self, user_id: str, fact_id: str | None = None, text: str | None = None) -> int:
        """Delete the user's facts with id ``fact_id``, or matching ``text``; returns how many.

        ``text`` may name a topic ("where I live", "my name", "my daughter"), state the
        fact ("I live in Paris", "that I live in Paris"), or give words that all occur in
        the fact ("Paris"). Closed facts that match are deleted too: forgetting removes
        the fact's whole history, not only its current version. Each forgotten fact leaves
        a tombstone: a conversation the client resends does not bring it back; only the
        user stating it again in a new turn does.

        Raises:
            ValueError: neither or both of ``fact_id`` and ``text``, or an empty one.
        """
        user_id = _check_user(user_id)
        if (fact_id is None) == (text is None) or not (fact_id or text or "").strip():
            raise ValueError("give exactly one of fact_id and text, non-empty")
        with self._lock(user_id):
            if fact_id is not None:  # through _delete, so the fact leaves a tombstone
                facts = [f for f in self.store.get_facts(user_id=user_id, valid_only=False) if f.fact_id == fact_id]
                return len(self._delete(user_id, facts))
            what = re.sub(r"^(?:that|about|the\s+fact\s+that)\s+", "", (text or "").strip(), flags=re.I)
            request = ForgetRequest(said=what, keys=keys_for_phrase(what), text=what)
            return len(self._delete(user_id, self._matching(user_id, request)))

    def _matching(self, user_id: str, request: ForgetRequest) -> list[Fact]:
        facts = self.store.get_facts(user_id=user_id, valid_only=False)
        if request.everything:
            return facts
        if request.keys:
            return [f for f in facts if any(_key(f) == k or _key(f).startswith(k + ":") for k in request.keys)]
        stated = parse_clause(Clause(request.text)) or []
        if stated:
            wanted = {(c.key, c.norm_value, c.negated) for c in stated}
            return [f for f in facts if (_key(f), norm_text(str(f.metadata.get("value", ""))), _negated(f)) in wanted]
        words = _content_words(request.text)
        if not words:
            return []
        return [f for f in facts if words <= _content_words(f"{f.text} {f.metadata.get('said', '')}")]

    def _delete(self, user_id: str, facts: list[Fact]) -> list[Fact]:
        """Delete ``facts`` and leave a tombstone for each (caller holds the user's lock)."""
        unique = {f.fact_id: f for f in facts}
        gone = [f for f in unique.values() if self.store.delete_fact(user_id=user_id, fact_id=f.fact_id)]
        if gone:
            stones = self._state(user_id, _TOMBSTONES)
            stones += [_identity(_key(f), str(f.metadata.get("value", "")), _negated(f)) for f in gone]
            self._put_state(user_id, _TOMBSTONES, list(dict.fromkeys(stones)))
        return gone

    # -- what was read and what was forgotten ---------------------------------------------------

    def _state(self, user_id: str, key: str) -> list[str]:
        art = self.store.get_artifact(scope="user", owner=user_id, kind=_STATE_KIND, key=key)
        return list(art.payload.get("items", [])) if art is not None else []

    def _put_state(self, user_id: str, key: str, items: list[str]) -> None:
        from tailorlm.data import Artifact

        payload = {"items": items[-_STATE_LIMIT:]}
        self.store.put_artifact(Artifact(scope="user", owner=user_id, kind=_STATE_KIND, key=key, payload=payload))

    def _mark_seen(self, user_id: str, turns: Sequence[str]) -> None:
        with self._lock(user_id):
            seen = self._state(user_id, _SEEN)
            new = [h for h in dict.fromkeys(_turn_hash(t) for t in turns) if h not in set(seen)]
            if new:
                self._put_state(user_id, _SEEN, seen + new)

    def _past_tombstones(self, user_id: str, candidates: Sequence[Candidate], latest: set[str]) -> list[Candidate]:
        """Drop candidates of forgotten facts unless the user states them again in the new turn,
        which lifts the tombstone (caller holds the user's lock)."""
        stones = self._state(user_id, _TOMBSTONES)
        if not stones:
            return list(candidates)
        kept, lifted = [], set()
        for cand in candidates:
            ident = _identity(cand.key, cand.value, cand.negated)
            if ident not in stones:
                kept.append(cand)
            elif cand.said in latest or any(cand.said in c or c in cand.said for c in latest):
                kept.append(cand)
                lifted.add(ident)
        if lifted:
            self._put_state(user_id, _TOMBSTONES, [s for s in stones if s not in lifted])
        return kept


_STOP = frozenset(
    {"i", "me", "my", "mine", "am", "is", "are", "was", "were", "be", "been", "a", "an", "the", "that", "this"}
    | {"about", "do", "does", "did", "not", "to", "in", "of", "and", "or", "you", "your", "it", "please", "what"}
    | {"where", "who", "how", "when", "which", "have", "has", "had", "also", "there", "here"}
)


def _content_words(text: str) -> set[str]:
    words = set()
    for w in norm_text(text).split():
        if w not in _STOP:
            words.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return words


_STATE_KIND = "memory"  # per-user artifacts: the turns read (by hash) and the forgotten facts
_SEEN, _TOMBSTONES = "seen-turns", "tombstones"
_STATE_LIMIT = 10_000  # hashes kept per user; older turns may then be read again (tombstones still hold)


def _turn_hash(text: str) -> str:
    return hashlib.sha256(norm_text(text).encode("utf-8")).hexdigest()[:24]


def _identity(key: str, value: str, negated: bool) -> str:
    """What a fact says, whatever its id or wording: key, normalized value, polarity."""
    return f"{key}\x1f{norm_text(value)}\x1f{int(bool(negated))}"


def _key(fact: Fact) -> str:
    return str(fact.metadata.get("key") or "")


def _negated(fact: Fact) -> bool:
    return bool(fact.metadata.get("negated", False))


def _check_user(user_id: str) -> str:
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    return user_id
