"""Pair-wise preferences for DPO: derived from real data, or read from wherever else they came.

Why derived pairs: public review data has no "the user preferred A over B" labels,
but it does hold what each user *chose* to write. These pairs are derived, not
annotated, and say so in ``Preference.source``:

- ``derived:other-user-title``: for a user's review-title example, the user's own
  title (chosen) over the title another user wrote for the most similar review
  (BM25 over review text) -- only among *other* users, only reviews written
  strictly *before* the example, so a pair never leaks the future or the user.
- ``derived:base-output``: the user's own title over what the base model writes for
  the same prompt (needs the generator).
- ``derived:title-vs-first-sentence``: two real texts of one user about the same
  product, a short one (the review title) and a longer one (the review's first
  sentence), with the rest of the review as the prompt. Stored twice, as dimension
  ``concise`` (short chosen) and ``detailed`` (long chosen): Personalized-Soups
  trains one adapter per dimension and mixes them per user. Such pairs are
  symmetric by construction, so they carry no per-user signal and are left out of
  a user's task DPO (:func:`training_pairs` with ``dimension=None``). "casual vs
  formal" is not derived: nothing in the data says which text is formal without a
  classifier's opinion; formality pairs can still come from elsewhere
  (e.g. the workbench, ``source="workbench"``, any ``dimension``).

Every pair is stored as a :class:`~tailorlm.data.Preference` whose ``pref_id`` is
derived from (source, example or document, dimension), so deriving again upserts
the same rows (idempotent) and a changed population replaces a pair rather than
piling up variants. ``prompt`` is the user message (the task request), the same
text the model sees at inference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tailorlm.data import Preference, content_id

if TYPE_CHECKING:
    from tailorlm.data import Store, TaskExample
    from tailorlm.retrieval import HistoryEntry

__all__ = [
    "DIMENSIONS",
    "SOURCE_BASE",
    "SOURCE_DIMENSION",
    "SOURCE_OTHER_USER",
    "PairConfig",
    "PairReport",
    "derive_pairs",
    "dimension_pairs",
    "first_sentence",
    "training_pairs",
]

SOURCE_OTHER_USER = "derived:other-user-title"
SOURCE_BASE = "derived:base-output"
SOURCE_DIMENSION = "derived:title-vs-first-sentence"
DIMENSIONS = ("concise", "detailed")
#: Sources whose pairs come in opposite-direction twins (never trained on together).
SYMMETRIC_SOURCES = frozenset({SOURCE_DIMENSION})

_DIM_PROMPT = "Sum up your opinion of this product.\n\nYour review: {rest}"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class PairConfig:
    """What :func:`derive_pairs` derives.

    Args:
        task: the task whose examples are paired (their target is the user's own text).
        other_user: derive ``derived:other-user-title`` pairs.
        base_output: derive ``derived:base-output`` pairs (needs a generator).
        dimensions: derive ``concise``/``detailed`` pairs from the user's reviews.
        candidates: BM25 hits searched for another user's earlier review.
        max_per_user: keep only the user's most recent examples (None: all).
        review_chars: review text kept in a base-output prompt (bounds generation cost).
        max_new_tokens: generation budget of a base-output answer.
    """

    task: str = "amazon-title"
    other_user: bool = True
    base_output: bool = False
    dimensions: bool = False
    candidates: int = 50
    max_per_user: int | None = None
    review_chars: int = 600
    max_new_tokens: int = 24

    def __post_init__(self) -> None:
        from tailorlm.tasks import get_task

        task = get_task(self.task)  # raises with the known names
        if task.kind != "generation":
            raise ValueError(f"PairConfig.task must be a generation task, {self.task!r} is {task.kind!r}")
        if self.candidates < 1:
            raise ValueError(f"PairConfig.candidates must be >= 1, got {self.candidates}")
        if self.max_per_user is not None and self.max_per_user < 1:
            raise ValueError(f"PairConfig.max_per_user must be >= 1 or None, got {self.max_per_user}")


@dataclass
class PairReport:
    """What one derivation produced, per source, and what it skipped and why."""

    stored: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def count(self, bucket: dict[str, int], name: str) -> None:
        bucket[name] = bucket.get(name, 0) + 1


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def first_sentence(text: str) -> tuple[str, str]:
    """Split ``text`` into its first sentence and the rest (rest is '' for one sentence).

    Example:
        >>> first_sentence("Great strings. They last. Buy them.")
        ('Great strings.', 'They last. Buy them.')
    """
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    return parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")


class _OtherUsers:
    """The population's reviews, searchable by BM25, filtered per query by user and time."""

    def __init__(self, store: Store, population: Sequence[str], doc_kind: str | None) -> None:
        from tailorlm.retrieval import BM25Ranker, load_history

        self.entries: list[HistoryEntry] = [
            e
            for u in sorted(set(population))
            for e in load_history(store, user_id=u, doc_kind=doc_kind)
            if e.title and e.title.strip() and e.timestamp is not None
        ]
        self.ranker = BM25Ranker(cache_size=1)

    def nearest(self, text: str, *, user_id: str, before: int, avoid: str, k: int) -> HistoryEntry | None:
        """Most similar review by another user, strictly before ``before``, whose title differs."""

        def ok(e: HistoryEntry) -> bool:
            return e.user_id != user_id and e.timestamp < before and not _same(e.title or "", avoid)

        for depth in (k, len(self.entries)):  # widen once if the top hits are all ineligible
            hits = self.ranker.rank(self.entries, query=text, k=min(depth, len(self.entries))) if self.entries else []
            for h in hits:
                if ok(h.entry):
                    return h.entry
            if depth >= len(self.entries):
                break
        return None


def _recent(examples: list[TaskExample], n: int | None) -> list[TaskExample]:
    dated = sorted((e for e in examples if e.timestamp is not None and e.target), key=lambda e: e.timestamp or 0)
    return dated[-n:] if n is not None else dated


def derive_pairs(
    store: Store,
    user_ids: Sequence[str],
    *,
    population: Sequence[str] | None = None,
    config: PairConfig | None = None,
    generator: Any | None = None,
) -> PairReport:
    """Derive and store preference pairs for ``user_ids`` (see the module docstring).

    ``population``: whose reviews may serve as rejected titles (default: every user in
    the store); the user themself is always excluded. Undated examples are skipped:
    without a time nothing proves the other review came earlier.
    """
    cfg = config or PairConfig()
    if cfg.base_output and generator is None:
        raise ValueError("PairConfig(base_output=True) needs the generator that writes the rejected answers")
    from tailorlm.tasks import get_task

    task = get_task(cfg.task)
    report = PairReport()
    pool = _OtherUsers(store, population if population is not None else store.list_users(), task.history_kind)
    fingerprint = _fingerprint(generator) if generator is not None else ""
    prefs: list[Preference] = []
    for uid in user_ids:
        examples = _recent(store.get_examples(task=cfg.task, user_id=uid), cfg.max_per_user)
        if cfg.other_user:
            for ex in examples:
                assert ex.target is not None and ex.timestamp is not None
                other = pool.nearest(ex.input, user_id=uid, before=ex.timestamp, avoid=ex.target, k=cfg.candidates)
                if other is None:
                    report.count(report.skipped, f"{SOURCE_OTHER_USER}: no similar earlier review by another user")
                    continue
                prefs.append(
                    Preference(
                        user_id=uid,
                        pref_id=content_id(SOURCE_OTHER_USER, cfg.task, ex.example_id),
                        prompt=task.request(ex.input),
                        chosen=ex.target,
                        rejected=other.title or "",
                        source=SOURCE_OTHER_USER,
                        timestamp=ex.timestamp,
                    )
                )
        if cfg.base_output and examples:
            prefs += _base_output_pairs(uid, examples, task, cfg, generator, fingerprint, report)
        if cfg.dimensions:
            prefs += dimension_pairs(store, uid, report=report)
    if prefs:
        store.add(prefs, source="derived")
    for p in prefs:
        report.count(report.stored, f"{p.source}" + (f" [{p.dimension}]" if p.dimension else ""))
    return report


def _fingerprint(generator: Any) -> str:
    from tailorlm.models.base import model_fingerprint

    return model_fingerprint(generator)


def _base_output_pairs(
    uid: str,
    examples: list[TaskExample],
    task: Any,
    cfg: PairConfig,
    generator: Any,
    fingerprint: str,
    report: PairReport,
) -> list[Preference]:
    from tailorlm.models.base import GenerationConfig

    prompts = [task.request(ex.input[: cfg.review_chars]) for ex in examples]
    convs = [[{"role": "system", "content": task.system}, {"role": "user", "content": p}] for p in prompts]
    outputs = generator.generate(convs, config=GenerationConfig(max_new_tokens=cfg.max_new_tokens))
    out: list[Preference] = []
    for ex, prompt, text in zip(examples, prompts, outputs, strict=True):
        text = text.strip().strip('"').strip()
        if not text or _same(text, ex.target or ""):
            report.count(report.skipped, f"{SOURCE_BASE}: base output empty or equal to the user's title")
            continue
        out.append(
            Preference(
                user_id=uid,
                pref_id=content_id(SOURCE_BASE, cfg.task, ex.example_id, fingerprint),
                prompt=prompt,
                chosen=ex.target or "",
                rejected=text,
                source=SOURCE_BASE,
                timestamp=ex.timestamp,
            )
        )
    return out


def dimension_pairs(
    store: Store,
    user_id: str,
    *,
    doc_kind: str = "review",
    report: PairReport | None = None,
) -> list[Preference]:
    """``concise``/``detailed`` pairs from the user's own reviews (not stored; see :func:`derive_pairs`).

    A review qualifies when its first sentence is 6-40 words, at least twice as long as
    the title and not the title itself, and at least 5 words of review follow it (the
    prompt). The two texts are the same author on the same product: similar content,
    different length.
    """
    report = report or PairReport()
    out: list[Preference] = []
    for doc in store.get_documents(user_id=user_id, doc_kind=doc_kind):
        title = (doc.title or "").strip()
        first, rest = first_sentence(doc.text or "")
        n_title, n_first = len(title.split()), len(first.split())
        if not title or not (6 <= n_first <= 40) or n_first < 2 * n_title or len(rest.split()) < 5:
            report.count(report.skipped, f"{SOURCE_DIMENSION}: review does not qualify")
            continue
        if _same(first, title):
            continue
        prompt = _DIM_PROMPT.format(rest=rest)
        for dim, chosen, rejected in (("concise", title, first), ("detailed", first, title)):
            out.append(
                Preference(
                    user_id=user_id,
                    pref_id=content_id(SOURCE_DIMENSION, doc.doc_id, dim),
                    prompt=prompt,
                    chosen=chosen,
                    rejected=rejected,
                    dimension=dim,
                    source=SOURCE_DIMENSION,
                    timestamp=doc.timestamp,
                )
            )
    return out


def training_pairs(
    store: Store,
    user_ids: Sequence[str],
    *,
    before: int | None = None,
    dimension: str | None = None,
    sources: Sequence[str] | None = None,
) -> list[Preference]:
    """The stored pairs a DPO adapter may train on: any source (derived, workbench, uploads).

    ``before``: only pairs strictly before this time; with a cut-off, undated pairs are
    left out (nothing proves they precede it). ``dimension=None``: every pair except
    the symmetric derived dimension twins (training on both directions cancels out);
    a dimension name: only that dimension's pairs. ``sources``: keep pairs whose
    source starts with one of these prefixes (e.g. ``["derived:other-user", "workbench"]``).
    """
    out: list[Preference] = []
    for uid in user_ids:
        for p in store.get_preferences(user_id=uid, dimension=dimension):
            if before is not None and (p.timestamp is None or p.timestamp >= before):
                continue
            if dimension is None and p.source in SYMMETRIC_SOURCES:
                continue
            if sources is not None and not any((p.source or "").startswith(s) for s in sources):
                continue
            out.append(p)
    return out
