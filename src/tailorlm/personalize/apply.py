"""One call that applies personalization to a model: :func:`generate`.

``generate(store, generator, "rag-bm25+profile", user_id="u1", query="...")`` builds (or
takes) a personalizer, personalizes the input for that user and hands the result to the
generator through :func:`~tailorlm.models.inputs.generate_inputs`, which passes the
messages, the adapter and the soft prompt alike for every method. The service, the CLI's
``generate``, the demo and the task predictors all go through the same two steps
(:func:`personalize_input`, then ``generate_inputs``), so no caller drops an adapter or a
soft prompt.

A client's own conversation (the chat API) keeps its turns: the personalized context is
added to the client's system message, or to the task's when the client sent none
(:func:`for_conversation`); the rendered prompt is never taken apart again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tailorlm.errors import ConfigError
from tailorlm.models.base import GenerationConfig, Generator
from tailorlm.models.inputs import generate_inputs
from tailorlm.personalize.pipeline import parse_method_spec
from tailorlm.personalize.render import context_text
from tailorlm.personalize.types import PersonalizedInput, Query
from tailorlm.tasks.base import get_task

if TYPE_CHECKING:
    from tailorlm.data.store import Store
    from tailorlm.models.base import Embedder
    from tailorlm.personalize.base import Personalizer

__all__ = ["Generated", "for_conversation", "generate", "personalize_input", "trim_context"]


@dataclass
class Generated:
    """An answer and the exact model input (with its usage record) that produced it."""

    text: str
    input: PersonalizedInput


def for_conversation(
    pers: PersonalizedInput, messages: Sequence[Mapping[str, str]], *, task: str = "chat"
) -> PersonalizedInput:
    """``pers`` with its messages replaced by the client's conversation, the personalized
    context appended to the client's system message (or to the task's system text when the
    client sent none). Adapter, soft prompt and record are kept."""
    client_system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
    system = (client_system or get_task(task).system) + pers.context
    return dataclasses.replace(pers, messages=[{"role": "system", "content": system}, *turns])


def trim_context(
    pers: PersonalizedInput,
    messages: Sequence[Mapping[str, str]],
    fits: Callable[[PersonalizedInput], bool],
    *,
    task: str = "chat",
) -> PersonalizedInput:
    """``pers`` for the client's ``messages`` with as many context lines as ``fits`` allows.

    Lines go in the order the renderer kept them (higher-priority blocks first, the most
    relevant first within a block), so the least relevant are dropped first, never cut
    mid-line; the usage record lists only what is left and counts the rest as dropped.
    A binary search over how many lines to keep: ``fits`` is called O(log lines) times.
    """
    order = sorted(range(len(pers.blocks)), key=lambda i: -pers.blocks[i].priority)
    lines = [(bi, item) for bi in order for item in pers.blocks[bi].items]

    def keeping(n: int) -> PersonalizedInput:
        kept = {bi: [it for b, it in lines[:n] if b == bi] for bi in order}
        blocks = [dataclasses.replace(b, items=tuple(kept[i])) for i, b in enumerate(pers.blocks) if kept[i]]
        ids = {(b.kind, it.source_id) for b in blocks for it in b.items}
        record = dataclasses.replace(
            pers.record,
            retrieved=[r for r in pers.record.retrieved if (r["block"], r["id"]) in ids],
            dropped_items=pers.record.dropped_items + len(lines) - n,
        )
        base = dataclasses.replace(pers, blocks=blocks, context=context_text(blocks), record=record)
        return for_conversation(base, messages, task=task)

    lo, hi = 0, len(lines)  # keeping lo lines fits (or nothing does); keeping hi + 1 does not
    if fits(full := keeping(hi)):
        return full
    hi -= 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(keeping(mid)):
            lo = mid
        else:
            hi = mid - 1
    return keeping(lo)


def personalize_input(
    method: Personalizer,
    user_id: str,
    *,
    query: Query | str | None = None,
    messages: Sequence[Mapping[str, str]] | None = None,
    task: str = "chat",
) -> PersonalizedInput:
    """Personalize either a ``query`` (rendered with the task's prompt) or a client's
    ``messages`` (personalized for their last user turn, the conversation kept).

    Raises:
        ConfigError: neither or both of ``query`` and ``messages``, or no user turn to
            personalize for.
    """
    if (query is None) == (messages is None):
        raise ConfigError("give exactly one of query= or messages=")
    if messages is not None:
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if not text.strip():
            raise ConfigError("messages need a non-empty user message to personalize for")
        return for_conversation(method.personalize(user_id, Query(text, task=task)), messages, task=task)
    q = query if isinstance(query, Query) else Query(str(query), task=task)
    return method.personalize(user_id, q)


def generate(
    store: Store,
    generator: Generator,
    method: Personalizer | str,
    *,
    user_id: str,
    query: Query | str | None = None,
    messages: Sequence[Mapping[str, str]] | None = None,
    config: GenerationConfig | None = None,
    task: str = "chat",
    embedder: Embedder | None = None,
    population: Sequence[str] | None = None,
) -> Generated:
    """Personalize for ``user_id`` and generate, in one call.

    Args:
        store: where the user's data lives.
        generator: the model; it must hold the adapters a method names (the LoRA methods
            load them into the generator they were built with).
        method: a fitted personalizer, or a spec such as ``"rag-bm25+profile"``, which is
            built with ``generator`` and ``embedder`` and fitted on ``population`` (default:
            no population, so only the user's own data is used).
        query / messages: the input, see :func:`personalize_input`.

    Example:
        >>> from tailorlm.data.records import Document
        >>> from tailorlm.data.store import Store
        >>> from tailorlm.testing import FakeGenerator
        >>> store = Store("sqlite://")
        >>> _ = store.add([Document(user_id="u1", text="I love bright nylon strings")])
        >>> generate(store, FakeGenerator(), "rag-bm25", user_id="u1", query="strings?").input.record.scope
        'user'
    """
    if isinstance(method, str):
        method = parse_method_spec(method, collaborators={"generator": generator, "embedder": embedder})
        method.fit(store, list(population or []))
    pers = personalize_input(method, user_id, query=query, messages=messages, task=task)
    text = generate_inputs(generator, [pers], config=config or GenerationConfig())[0]
    return Generated(text=text, input=pers)
