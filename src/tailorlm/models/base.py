"""The two contracts every model backend honours: :class:`Generator` and :class:`Embedder`.

Everything above the model layer (RAG, prompting, per-user adapters, evaluation) talks to
these protocols only, so the same pipeline runs against the packaged local model in tests
and a vLLM server in production. They are :func:`~typing.runtime_checkable` structural
protocols rather than base classes so that thin wrappers and test doubles need not import
(or inherit from) anything here.

This module must stay import-light: no torch, transformers or numpy at import time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

from tailorlm.errors import BackendError

if TYPE_CHECKING:
    import numpy

__all__ = [
    "BASE_ADAPTER",
    "AdapterGenerator",
    "AdapterHost",
    "BackendError",
    "ChatMessage",
    "ChoiceScorer",
    "Embedder",
    "GenerationConfig",
    "Generator",
    "Messages",
    "RemoteAdapterHost",
    "TokenCounter",
    "adapter_fingerprint",
    "chat",
    "count_prompt_tokens",
    "count_text_tokens",
    "cut_at_stop",
    "model_fingerprint",
    "normalize_batch",
    "normalize_messages",
    "resolve_adapters",
]

Role = Literal["system", "user", "assistant"]
_ROLES: frozenset[str] = frozenset(("system", "user", "assistant"))

#: What PEFT's mixed-adapter batches call "no adapter"; reserved, so no adapter may use it.
BASE_ADAPTER = "__base__"


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation; plain ``{"role", "content"}`` dicts are accepted too."""

    role: Role
    content: str


Messages: TypeAlias = Sequence[ChatMessage | Mapping[str, str]]


def normalize_messages(messages: Messages) -> list[dict[str, str]]:
    """Validate a conversation and return it as the plain dicts chat templates expect.

    Validation happens here, once, rather than deep inside a tokenizer or an HTTP server,
    so a bad message fails fast with an error that says which message is wrong.

    Example:
        >>> normalize_messages([ChatMessage("user", "hi")])
        [{'role': 'user', 'content': 'hi'}]
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise ValueError(f"messages must be a sequence of chat messages, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: a conversation needs at least one message")
    out: list[dict[str, str]] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, ChatMessage):
            role, content = msg.role, msg.content
        elif isinstance(msg, Mapping):
            if "role" not in msg or "content" not in msg:
                raise ValueError(f"messages[{i}]: needs 'role' and 'content' keys, got {list(msg)}")
            role, content = msg["role"], msg["content"]
        else:
            raise ValueError(f"messages[{i}]: expected a ChatMessage or a mapping, got {type(msg).__name__}")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}]: role {role!r} is not one of {sorted(_ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}]: content must be str, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def normalize_batch(batch: Sequence[Messages]) -> list[list[dict[str, str]]]:
    """Validate a batch of conversations (see :func:`normalize_messages`).

    Passing one conversation where a batch is expected is the easiest mistake to make with
    :meth:`Generator.generate`, so it gets its own error message.
    """
    if isinstance(batch, str | bytes | Mapping) or not isinstance(batch, Sequence):
        raise ValueError(f"batch must be a sequence of conversations, got {type(batch).__name__}")
    if batch and isinstance(batch[0], ChatMessage | Mapping):
        raise ValueError("batch looks like a single conversation; wrap it in a list or use chat()")
    out = []
    for i, messages in enumerate(batch):
        try:
            out.append(normalize_messages(messages))
        except ValueError as exc:
            raise ValueError(f"batch[{i}]: {exc}") from None
    return out


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings shared by all generators.

    The defaults are greedy decoding, because reproducible outputs matter more than
    variety when comparing personalization methods. ``stop`` follows OpenAI semantics:
    the output ends just before the first stop string, which is not included.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an int, got {self.max_new_tokens!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not _is_real(self.temperature) or self.temperature < 0.0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if not _is_real(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be a number in (0, 1], got {self.top_p!r}")
        stop: Any = self.stop
        if isinstance(stop, str):  # a bare string is a common slip; treat it as one stop string
            stop = (stop,)
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop must be a sequence of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(stop))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be None or an int >= 0, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _is_real(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` just before the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def resolve_adapters(adapter: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    """Expand the ``adapter`` argument of :meth:`Generator.generate` to one entry per row.

    One name applies to the whole batch; a sequence must have exactly one entry per
    conversation, ``None`` meaning the base model.
    """
    if adapter is None or isinstance(adapter, str):
        rows: list[str | None] = [adapter] * n
    else:
        rows = list(adapter)
        if len(rows) != n:
            raise ValueError(f"adapter has {len(rows)} entries but the batch has {n} conversations")
    for i, name in enumerate(rows):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"adapter[{i}] must be None or a non-empty string, got {name!r}")
    return rows


@runtime_checkable
class Generator(Protocol):
    """Anything that answers a batch of conversations.

    ``adapter`` selects a per-user LoRA adapter: one name for the whole batch or one per
    conversation (``None`` = base model). Batching is part of the contract because both
    local models and HTTP servers are far more efficient on batches than on single calls.
    """

    name: str  # model identifier used in provenance records

    def generate(
        self,
        batch: Sequence[Messages],
        *,
        config: GenerationConfig | None = None,
        adapter: str | Sequence[str | None] | None = None,
    ) -> list[str]: ...


def chat(generator: Generator, messages: Messages, **kw: Any) -> str:
    """Answer one conversation; ``kw`` is passed on to :meth:`Generator.generate`.

    Example:
        >>> from tailorlm.testing import FakeGenerator
        >>> chat(FakeGenerator(), [{"role": "user", "content": "hello"}])
        'echo: hello'
    """
    return generator.generate([messages], **kw)[0]


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into unit-length float32 vectors.

    ``name`` and ``version`` are stored next to every vector, so vectors from different
    models (or versions) are never compared by mistake.
    """

    name: str  # model name recorded with stored vectors
    version: str  # package version or a content hash; recorded as provenance
    dim: int

    def embed(self, texts: Sequence[str]) -> numpy.ndarray: ...


@runtime_checkable
class ChoiceScorer(Protocol):
    """A generator that can score fixed answers (constrained choice) instead of generating."""

    def score_choices(
        self, batch: Sequence[Messages], choices: Sequence[str], *, adapter: str | Sequence[str | None] | None = None
    ) -> Any:
        """(len(batch), len(choices)) log-probabilities of each choice as the assistant's answer."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """A generator that counts tokens with its own tokenizer (prompt budgets, usage reports)."""

    def count_tokens(self, messages: Messages) -> int:
        """Tokens of ``messages`` as rendered by the chat template, generation prompt included."""
        ...

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a bare text (a completion), without special tokens."""
        ...


@runtime_checkable
class AdapterHost(Protocol):
    """Holds named LoRA adapters in memory: load, list, unload (PEFT's naming)."""

    @property
    def adapters(self) -> list[str]:
        """Names of the adapters loaded now."""
        ...

    def add_adapter(self, name: str, path: Any) -> None: ...

    def delete_adapter(self, name: str) -> None: ...


@runtime_checkable
class RemoteAdapterHost(AdapterHost, Protocol):
    """An :class:`AdapterHost` whose adapters are loaded on another machine (a vLLM server).

    Its :meth:`add_adapter` only registers a folder; the load happens later, on the server,
    and can fail there for reasons no local check sees (a rank above ``--max-lora-rank``, a
    folder the server cannot read). :meth:`load_adapter` loads one now, so a caller that
    has other adapters to offer (the lora method's user -> persona -> global rule) meets the
    failure while it can still choose another, not in the middle of a generation.
    """

    def load_adapter(self, name: str) -> None:
        """Load the registered adapter ``name`` on the server now (raises BackendError)."""
        ...


@runtime_checkable
class AdapterGenerator(Generator, AdapterHost, ChoiceScorer, TokenCounter, Protocol):
    """A generator that holds named LoRA adapters in memory and switches them per row.

    The local backend implements all of it; an HTTP backend (vLLM) loads adapters on the
    server by name and so implements only :class:`Generator`. Code that needs adapters,
    choice scoring or token counts asks ``isinstance(gen, AdapterGenerator)`` (or the
    narrower protocols above) instead of probing attributes one by one.
    """


def count_prompt_tokens(generator: object, messages: Sequence[Mapping[str, str]]) -> int:
    """Real token counts when the generator can give them, whitespace words otherwise."""
    if isinstance(generator, TokenCounter):
        return int(generator.count_tokens(messages))
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def count_text_tokens(generator: object, text: str) -> int:
    """Tokens of a completion by the generator's tokenizer when it has one, else words."""
    if isinstance(generator, TokenCounter):
        return int(generator.count_text_tokens(text))
    return len(text.split())


def _unwrapped(generator: object) -> object:
    """The model behind wrappers (a generation cache, the service's lock): their own
    ``generator`` / ``inner`` attribute, followed down; they forward the rest."""
    for attr in ("generator", "inner"):  # own attributes only
        inner = vars(generator).get(attr) if hasattr(generator, "__dict__") else None
        if inner is not None and inner is not generator:
            return _unwrapped(inner)
    return generator


def model_fingerprint(generator: object) -> str:
    """Name plus whatever tells two builds of the same name apart (version, path, dtype, base URL).

    Adapters, caches and preference pairs are keyed by it, so an adapter trained on one
    model is never served on another. Wrappers (a generation cache, the service's lock) are
    seen through: an adapter trained on the model must be found again when the model is
    served or evaluated behind one.
    """
    generator = _unwrapped(generator)
    parts = [str(getattr(generator, "name", type(generator).__name__))]
    for attr in ("version", "path", "dtype", "base_url", "model"):
        value = getattr(generator, attr, None)
        if value is not None and not callable(value):
            parts.append(f"{attr}={value}")
    return "|".join(parts)


def adapter_fingerprint(generator: object) -> str:
    """The base model fingerprint under which the adapters ``generator`` serves are registered.

    Usually :func:`model_fingerprint`. A server that serves the same weights as another build
    (vLLM serving the local model's weights, whose adapters ``tailorlm train`` filed under the
    local model) says so in ``adapter_base``: its own fingerprint (name + URL) stays what
    output caches are keyed by, since its answers are not the local model's, while adapters
    are looked up under the build they were trained on.
    """
    inner = _unwrapped(generator)
    base = getattr(inner, "adapter_base", None)
    return base if isinstance(base, str) and base else model_fingerprint(inner)
