"""Personalize and bound requests for the service: fitted methods per spec, prompt limits.

- Methods are fitted once per spec on first use and cached; user deletion drops the
  cache (fitted methods may hold pooled population entries of the deleted user), a
  forgotten fact drops only that user's in-memory state.
- :meth:`Engine.prepare` turns a chat request into a bounded model input (the prompt
  counted in tokens after personalization, retrieved context trimmed first); generation
  itself is the scheduler's (:mod:`tailorlm.serve.scheduler`).
- The local model is not thread-safe (one set of weights, adapters switched in place):
  the scheduler and every other caller (profile summaries written by a method, memory
  extraction) go through :class:`LockedGenerator`'s lock, one forward pass or call at a time.
- Pooling: by default the service fits methods on an empty population, so a user's
  answers are built from that user's data only and a user-scoped key can never read
  another user's text through a prompt. ``pooled_context=True`` fits on every user,
  enabling persona/global fallback for cold users; other users' entries are then
  used in the prompt but redacted from the usage record returned to the caller.
- ``refuse_stale=True`` (``[serve] refuse_stale_artifacts``): a personalization that used a
  shared artifact marked stale by a user deletion is refused with a 503 (``serve/stale.py``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tailorlm.data.store import Store
from tailorlm.models.base import (
    Embedder,
    GenerationConfig,
    Generator,
    Messages,
    count_prompt_tokens,
)
from tailorlm.models.inputs import ModelInput
from tailorlm.personalize.apply import personalize_input, trim_context
from tailorlm.personalize.pipeline import parse_method_spec
from tailorlm.personalize.registry import FEATURED_PIPELINES, method_names
from tailorlm.personalize.types import PersonalizedInput, Query
from tailorlm.serve.errors import ApiError
from tailorlm.serve.stale import check_stale

__all__ = ["Engine", "LockedGenerator", "Prepared"]

MAX_SPEC_PARTS = 4  # callers choose specs: bound what one request can make the server fit
MAX_CACHED_SPECS = 32
_POOLED_SCOPES = ("persona", "global")


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class LockedGenerator:
    """Serializes every call into a generator that is not thread-safe (the local model).

    ``thread_safe=True`` (an HTTP backend: each call is its own request) makes the lock a
    no-op, so a vLLM server behind the service sees concurrent requests and batches them.
    """

    def __init__(self, inner: Generator, *, thread_safe: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.lock: Any = _NoLock() if thread_safe else threading.Lock()
        self.scheduler: Any = None  # set by the app: then calls join the running batch

    def generate(self, batch: Sequence[Messages], **kw: Any) -> list[str]:
        """Answer ``batch``; through the scheduler's running batch when there is one (so a
        256-token memory extraction does not hold the model while chats wait)."""
        scheduler = self.scheduler
        if scheduler is not None and scheduler.continuous:
            from tailorlm.models.base import normalize_batch, resolve_adapters

            convs = normalize_batch(batch)
            adapters = resolve_adapters(kw.get("adapter"), len(convs))
            soft = kw.get("soft_prompt") or [None] * len(convs)
            rows = [ModelInput(c, a, sp) for c, a, sp in zip(convs, adapters, soft, strict=True)]
            return scheduler.generate(rows, kw.get("config") or GenerationConfig())
        with self.lock:
            return self.inner.generate(batch, **kw)

    def __getattr__(self, name: str) -> Any:  # adapters, path, ... (read-only attributes)
        return getattr(self.inner, name)


@dataclass
class Prepared:
    """A chat request ready for the scheduler: the model input and what the response reports."""

    row: ModelInput
    prompt_tokens: int
    usage: dict[str, Any] | None  # the ``tailorlm`` extension, when personalized
    known_user: bool = False  # the request named a stored user (its turn goes to memory)

    def token_usage(self, completion_tokens: int) -> dict[str, int]:
        """The OpenAI ``usage`` object of an answer of ``completion_tokens`` to this prompt."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }


#: A bound on the characters one token stands for (SmolLM2's longest token decodes to 81), so
#: a text of ``chars`` characters has at least ``chars / 128`` tokens: a 900 KB message is
#: refused on its length before the tokenizer spends half a second on it.
MAX_CHARS_PER_TOKEN = 128


def _too_long(count: str, limit: int, what: str) -> ApiError:
    return ApiError(
        400,
        f"{what} take {count} tokens, over this request's limit of {limit} tokens "
        "(the model's context minus max_tokens, and at most the server's max_prompt_tokens); "
        "shorten the messages or lower max_tokens",
        param="messages",
        code="context_length_exceeded",
    )


class Engine:
    """Everything between a validated request and the model."""

    def __init__(
        self,
        store: Store,
        generator: Generator,
        *,
        embedder: Embedder | None = None,
        pooled_context: bool = False,
        budget_tokens: int = 1024,
        max_prompt_tokens: int = 4096,
        refuse_stale: bool = False,
    ) -> None:
        self.store = store
        self.refuse_stale = refuse_stale
        if not isinstance(generator, LockedGenerator):
            from tailorlm.models.openai_http import OpenAICompatibleGenerator

            generator = LockedGenerator(generator, thread_safe=isinstance(generator, OpenAICompatibleGenerator))
        self.generator = generator
        self.embedder = embedder
        self.pooled_context = pooled_context
        self.budget_tokens = budget_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self._methods: OrderedDict[str, Any] = OrderedDict()
        self._methods_lock = threading.Lock()

    # -- models and methods ---------------------------------------------------------------

    def model_ids(self) -> list[str]:
        specs = dict.fromkeys([*method_names(), *FEATURED_PIPELINES])
        return [f"tailorlm/{s}" for s in specs] + [self.generator.name]

    def method(self, spec: str, *, param: str = "model") -> Any:
        """The fitted personalizer for ``spec`` (fitted once; concurrent first calls wait)."""
        with self._methods_lock:
            if spec in self._methods:
                self._methods.move_to_end(spec)
                return self._methods[spec]
            if spec.count("+") >= MAX_SPEC_PARTS:
                raise ApiError(400, f"method spec {spec!r} has more than {MAX_SPEC_PARTS} parts", param=param)
            try:
                method = parse_method_spec(
                    spec,
                    collaborators={"generator": self.generator, "embedder": self.embedder},
                    budget_tokens=self.budget_tokens,
                )
            except (ValueError, TypeError) as exc:
                raise ApiError(
                    404, f"unknown method spec {spec!r}: {exc}", param=param, code="model_not_found"
                ) from None
            population = self.store.list_users() if self.pooled_context else []
            method.fit(self.store, population)
            self._methods[spec] = method
            if len(self._methods) > MAX_CACHED_SPECS:
                self._methods.popitem(last=False)
            return method

    def invalidate(self) -> None:
        """Drop every fitted method (after a user deletion); they refit on next use."""
        with self._methods_lock:
            self._methods.clear()

    def forget(self, user_id: str) -> None:
        """Drop what fitted methods hold in memory about one user (after forgetting a fact)."""
        with self._methods_lock:
            methods = list(self._methods.values())
        for m in methods:
            m.forget(user_id)

    # -- personalizing ----------------------------------------------------------------------

    def require_user(self, user_id: str) -> None:
        if not self.store.has_user(user_id=user_id):
            raise ApiError(404, f"unknown user {user_id!r}; create it with POST /v1/users", param="user_id")

    def personalize(
        self, user_id: str, spec: str, text: str, *, param: str = "model"
    ) -> tuple[PersonalizedInput, dict[str, Any]]:
        """Model input for ``text`` and the usage record callers may see (pooled entries redacted)."""
        return self._usage(user_id, spec, self.method(spec, param=param).personalize(user_id, Query(text, task="chat")))

    def _usage(self, user_id: str, spec: str, pers: PersonalizedInput) -> tuple[PersonalizedInput, dict[str, Any]]:
        """The usage record callers may see; every personalized answer passes here, so this is
        also where a stale shared artifact is refused (``refuse_stale``)."""
        if self.refuse_stale:
            check_stale(self.store, pers)
        texts = {(b.kind, it.source_id): it.text for b in pers.blocks for it in b.items}
        redact = pers.record.scope in _POOLED_SCOPES
        retrieved = []
        for r in pers.record.retrieved:
            pooled = redact and r["block"] in ("history", "persona", "examples")
            retrieved.append(
                {
                    "block": r["block"],
                    "id": None if pooled else r["id"],
                    "score": r["score"],
                    "text": None if pooled else texts.get((r["block"], r["id"])),
                }
            )
        usage = {**pers.record.to_dict(), "retrieved": retrieved, "method": spec, "user": user_id}
        return pers, usage

    def scope_of(self, user_id: str, counts: dict[str, int]) -> tuple[str, str | None]:
        """(scope, persona id) a chat for ``user_id`` would be served at now.

        Without pooling the answer follows from the counts (own history: 'user', none:
        'none'), as RAG's fallback decides it; with pooling it takes a retrieval to know.
        """
        if not self.pooled_context:
            return ("user" if counts.get("documents", 0) + counts.get("interactions", 0) else "none"), None
        _, usage = self.personalize(user_id, "rag-bm25", "overview")
        return usage["scope"], usage["persona_id"]

    # -- preparing a request for the scheduler -------------------------------------------------

    def prompt_limit(self, max_tokens: int) -> int:
        """The longest prompt a request with ``max_tokens`` may send: the model's context minus
        the answer, and at most ``max_prompt_tokens``."""
        context = getattr(self.generator.inner, "context_length", None)
        limit = self.max_prompt_tokens
        if isinstance(context, int):
            limit = min(limit, context - max_tokens)
        return limit

    def count(self, messages: Messages) -> int:
        """Prompt tokens of ``messages`` (the model's tokenizer when it has one), without the
        model lock. Text far longer than the limit is refused on its length alone, before
        tokenizing: no token is longer than ``MAX_CHARS_PER_TOKEN`` characters."""
        return count_prompt_tokens(self.generator.inner, messages)

    def _check_length(self, messages: Messages, limit: int, *, what: str) -> int:
        chars = sum(len(str(m.get("content", ""))) for m in messages)
        if chars // MAX_CHARS_PER_TOKEN > limit:
            raise _too_long(f"at least {chars // MAX_CHARS_PER_TOKEN}", limit, what)
        n = self.count(messages)
        if n > limit:
            raise _too_long(str(n), limit, what)
        return n

    def prepare(
        self, user_id: str | None, spec: str | None, messages: list[dict[str, str]], config: GenerationConfig
    ) -> Prepared:
        """Personalize (when ``spec`` names a method) and bound one chat request.

        The client's own messages are checked first, so an oversized request is refused
        before any retrieval; then the personalized prompt, whose retrieved context is
        trimmed (least relevant lines first) when only the context makes it too long.

        Raises:
            ApiError: 400 for a prompt over :meth:`prompt_limit` (the message gives both
                numbers), 404 for an unknown user or method.
        """
        limit = self.prompt_limit(config.max_new_tokens)
        if limit < 1:
            raise ApiError(
                400,
                f"max_tokens {config.max_new_tokens} leaves no room for a prompt in the model's context",
                param="max_tokens",
            )
        own = self._check_length(messages, limit, what="the messages")
        known = user_id is not None and spec is None and self.store.has_user(user_id=user_id)
        if spec is None:
            return Prepared(ModelInput([dict(m) for m in messages]), own, None, known)
        if user_id is None:
            raise ApiError(400, "a tailorlm/... model needs the 'user' field (or a user-scoped key)", param="user")
        self.require_user(user_id)
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        if not text or not text.strip():
            raise ApiError(400, "messages need a non-empty user message to personalize for", param="messages")
        pers = personalize_input(self.method(spec), user_id, messages=messages)
        return self._within(user_id, spec, pers, messages, limit)

    def _within(
        self, user_id: str, spec: str, pers: PersonalizedInput, messages: list[dict[str, str]], limit: int
    ) -> Prepared:
        """``pers`` (for the client's ``messages``) within ``limit`` tokens: retrieved context
        trimmed first, then refused with a 400."""
        n = self.count(pers.messages)
        if n > limit:
            pers = trim_context(pers, messages, lambda p: self.count(p.messages) <= limit)
            n = self._check_length(pers.messages, limit, what="the personalized prompt")
        row, usage = self._usage(user_id, spec, pers)
        return Prepared(row, n, usage, True)

    def prepare_compare(self, user_id: str, spec: str, message: str, max_tokens: int) -> tuple[Prepared, Prepared]:
        """The personalized and the baseline input for one message, both bounded like a chat."""
        self.require_user(user_id)
        limit = self.prompt_limit(max_tokens)
        query = Query(message, task="chat")
        baseline = self.method("identity").personalize(user_id, query)
        n_base = self._check_length(baseline.messages, limit, what="the message")
        pers = self.method(spec, param="method").personalize(user_id, query)
        return self._within(user_id, spec, pers, pers.messages[1:], limit), Prepared(baseline, n_base, None, True)
