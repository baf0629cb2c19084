"""Deciding what a turn changes: which candidates are new, which repeat a known fact, which facts they close.

Pure logic over the user's currently valid facts, so it is tested without a store or a
model. Two candidates meet a known fact in one of three ways:

- duplicate: same key, value and polarity, or the same normalized statement, or (with an
  embedder) a near-identical meaning that is not a contradiction;
- contradiction: same single-valued key with another value ("location: Lyon" then
  "Paris"), or the same key with the opposite polarity ("likes jazz" then "I don't like
  jazz anymore"); the known fact is closed (``valid_to``), never overwritten;
- neither: the candidate is added beside it (multi-valued keys such as ``likes:*``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tailorlm.data.derived import Fact
from tailorlm.memory.config import MemoryConfig
from tailorlm.memory.schema import Candidate, norm_text

__all__ = ["Plan", "conflicting", "contradicts", "plan_update", "settle"]

#: (new statements, known statements) -> cosine similarities, one row per new statement.
Similarity = Callable[[Sequence[str], Sequence[str]], Sequence[Sequence[float]]]


@dataclass
class Plan:
    add: list[Candidate] = field(default_factory=list)
    invalidate: list[Fact] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # fact ids of known facts stated again


Triple = tuple[str, str, bool]  # (key, normalized value, negated)


def _meta(fact: Fact) -> Triple:
    """(key, normalized value, negated) of a stored fact; facts stored by others may lack a key."""
    md = fact.metadata
    return str(md.get("key") or ""), norm_text(str(md.get("value") or fact.text)), bool(md.get("negated", False))


def fact_order(fact: Fact) -> tuple[int, int, str]:
    """Which of two facts is the later: ``valid_from``, then when it was written (``seq``,
    nanoseconds, so two statements in the same second keep their order), then its id. Every
    close, by a writer's plan or by :func:`settle`, closes only facts earlier than a valid fact
    that contradicts them, so the latest of a key is never closed, whatever the interleaving."""
    return fact.valid_from, int(fact.metadata.get("seq") or 0), fact.fact_id


def conflicting(a: Triple, b: Triple, config: MemoryConfig) -> bool:
    """Whether two statements cannot both hold (symmetric)."""
    (key, value, negated), (key_b, value_b, negated_b) = a, b
    if key != key_b or not key:
        return False
    if negated != negated_b:
        # "I don't live in Lyon" closes "I live in Lyon" but not "I live in Paris".
        return value == value_b or not config.is_single_valued(key)
    return config.is_single_valued(key) and not negated and value != value_b


def contradicts(cand: Candidate, fact: Fact, config: MemoryConfig) -> bool:
    """Whether ``cand`` makes the known ``fact`` no longer true.

    Example:
        >>> from tailorlm.memory.schema import make_candidate
        >>> old = Fact(user_id="u", fact_id="f", text="I live in Lyon", metadata={"key": "location", "value": "Lyon"})
        >>> contradicts(make_candidate("location", "Paris", said="I moved to Paris", extractor="rules"), old,
        ...             MemoryConfig())
        True
    """
    return conflicting((cand.key, cand.norm_value, cand.negated), _meta(fact), config)


def settle(valid: Sequence[Fact], config: MemoryConfig) -> list[Fact]:
    """Valid facts that a later valid fact contradicts: what concurrent writers left open.

    One writer never leaves such pairs (its plan closes what it contradicts), but two
    processes observing the same user at once can each add a location. Every writer
    settles after writing; the later fact (:func:`fact_order`) wins, so all writers agree
    on the survivor whatever the interleaving.
    """
    by_key: dict[str, list[Fact]] = {}
    for f in valid:
        if f.is_valid and (key := _meta(f)[0]):
            by_key.setdefault(key, []).append(f)
    closing = []
    for group in by_key.values():
        group.sort(key=fact_order)
        for i, f in enumerate(group):
            if any(conflicting(_meta(f), _meta(g), config) for g in group[i + 1 :]):
                closing.append(f)
    return closing


def _triple(c: Candidate) -> Triple:
    return c.key, c.norm_value, c.negated


def _collapse(candidates: Sequence[Candidate], config: MemoryConfig) -> list[Candidate]:
    """One candidate per fact within a turn: a later statement replaces an earlier one it repeats or contradicts."""
    out: list[Candidate] = []
    for c in candidates:
        out = [
            o
            for o in out
            if _triple(o) != _triple(c)
            and norm_text(o.text) != norm_text(c.text)
            and not conflicting(_triple(o), _triple(c), config)
        ]
        out.append(c)
    return out


def plan_update(
    known: Sequence[Fact],
    candidates: Sequence[Candidate],
    *,
    config: MemoryConfig,
    similarity: Similarity | None = None,
) -> Plan:
    """What to add, close and count as repeated, given the user's valid facts ``known``."""
    plan = Plan()
    todo = _collapse(candidates, config)
    known = [f for f in known if f.is_valid]
    sims = similarity([c.text for c in todo], [f.text for f in known]) if similarity and todo and known else None
    closing: dict[str, Fact] = {}
    for i, cand in enumerate(todo):
        conflicts = [f for f in known if contradicts(cand, f, config)]
        dup = next((f for f in known if _same(cand, f)), None)
        if dup is None and sims is not None:
            best = max(range(len(known)), key=lambda j: sims[i][j])
            near = known[best]
            if sims[i][best] >= config.dedupe_threshold and near not in conflicts and _meta(near)[2] == cand.negated:
                dup = near
        if dup is not None:
            plan.duplicates.append(dup.fact_id)
            continue
        plan.add.append(cand)
        for f in conflicts:
            closing.setdefault(f.fact_id, f)
    plan.invalidate = list(closing.values())
    return plan


def _same(cand: Candidate, fact: Fact) -> bool:
    key, value, negated = _meta(fact)
    if key == cand.key and value == cand.norm_value and negated == cand.negated:
        return True
    return norm_text(fact.text) == norm_text(cand.text)
