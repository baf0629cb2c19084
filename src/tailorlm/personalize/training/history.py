"""Retrieval-augmented fine-tuning rows (LaMP's "fine-tuned" setting): the prompt with history.

Why: a spec such as ``lora-global+rag-bm25`` serves a pooled adapter *and* puts the user's
retrieved history in the prompt. An adapter trained on history-free prompts never learned
to use that history, so here each training example is rendered the way that spec renders
it at inference: the retrieval method is built from its spec (:func:`parse_method_spec`,
the same retriever, k, snippet length and renderer), fitted on the training population,
and asked for the example's model input with ``personalize(user, Query.from_example(ex))``.
The target stays the example's gold answer.

Leakage (the guards of :func:`~tailorlm.personalize.base.eligible_history`, the one place
they live, plus two here):

- only the example's user's history strictly before the example's time, without the
  example's own document (``doc_id``) or item, and for LaMP only the question's profile;
- an undated example has no time guard, so its own document is also found by content (an
  entry whose text is the example's input, or whose title is its target) and excluded;
- a cold-start fallback (persona or global scope: *other* users' entries) is not used for
  training: such an example keeps the history-free prompt, so the rows only ever quote
  the same user's earlier entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tailorlm.personalize.training.data import SFTExample

if TYPE_CHECKING:
    from tailorlm.data import Store, TaskExample
    from tailorlm.personalize.base import BasePersonalizer
    from tailorlm.personalize.pipeline import Pipeline
    from tailorlm.personalize.types import Query

__all__ = ["history_method", "history_query", "history_sft_examples"]


def _spec_overrides(spec: str, k: int | None) -> dict[str, dict[str, Any]]:
    """``k`` set on every part of ``spec`` whose config has a ``k`` field (the retrievers),
    as the evaluation runner's ``--k`` does; nothing when ``k`` is None (the spec's default)."""
    from tailorlm.personalize.registry import REGISTRY, resolve_alias

    if k is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for part in (p.strip() for p in spec.split("+")):
        name, _ = resolve_alias(part)
        if "k" in {f.name for f in dataclasses.fields(REGISTRY[name].config_cls)}:
            out[part] = {"k": k}
    if not out:
        raise ValueError(f"history_k={k} given, but no part of the history spec {spec!r} retrieves (has a k)")
    return out


def history_method(
    spec: str,
    store: Store,
    population: Sequence[str],
    *,
    k: int | None = None,
    budget_tokens: int = 1024,
    collaborators: Mapping[str, Any] | None = None,
) -> BasePersonalizer[Any] | Pipeline:
    """The retrieval method of ``spec`` (e.g. "rag-bm25"), built exactly as the evaluation
    runner builds a row's method (no token counter, the suite's budget) and fitted on
    ``population``, so training prompts are the inference prompts."""
    # Specs resolve against the registry, which a technique fills when its package is
    # imported; the rag package registers "rag-bm25" and the other retrievers.
    import tailorlm.personalize.rag  # noqa: F401
    from tailorlm.personalize.pipeline import parse_method_spec

    method = parse_method_spec(
        spec,
        collaborators=collaborators,
        overrides=_spec_overrides(spec, k),
        budget_tokens=budget_tokens,
        token_counter=None,
    )
    return method.fit(store, list(population))


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def history_query(store: Store, example: TaskExample) -> Query:
    """The example's inference query; an undated one also excludes its own document found
    by content, since without a time there is no "strictly before" to keep it out."""
    from tailorlm.personalize.base import eligible_history
    from tailorlm.personalize.types import Query

    query = Query.from_example(example)
    if example.timestamp is not None:
        return query
    text, target = _norm(example.input), _norm(example.target)
    own = [
        e.source_id
        for e in eligible_history(store, example.user_id, query)
        if _norm(e.text) == text or (target and _norm(e.title) == target)
    ]
    return dataclasses.replace(query, exclude_doc_ids=(*query.exclude_doc_ids, *own)) if own else query


def history_sft_examples(
    examples: Sequence[TaskExample], method: BasePersonalizer[Any] | Pipeline, store: Store
) -> list[SFTExample]:
    """One row per example: the prompt ``method`` renders for it (history of the same user,
    strictly earlier), or the history-free prompt when retrieval would fall back to other
    users. The rows' ``messages`` are what the model sees at inference; ``history_items``
    counts the quoted entries (a trainer records how many rows had any)."""
    from tailorlm.personalize.render import render
    from tailorlm.personalize.types import Contribution

    out: list[SFTExample] = []
    for ex in examples:
        query = history_query(store, ex)
        pers = method.personalize(ex.user_id, query)
        if pers.adapter is not None or pers.soft_prompt is not None:
            raise ValueError(
                f"the history spec must only add context to the prompt, but it served adapter {pers.adapter!r}"
                + (" and a soft prompt" if pers.soft_prompt is not None else "")
            )
        if pers.record.scope not in ("user", "none"):  # cold start: other users' entries
            pers = render([Contribution(method="adapter")], query)
        out.append(
            SFTExample(
                messages=tuple((m["role"], m["content"]) for m in pers.messages),
                target=str(ex.target),
                user_id=ex.user_id,
                example_id=ex.example_id,
                timestamp=ex.timestamp,
                history_items=sum(len(b.items) for b in pers.blocks),
            )
        )
    return out
