"""The value types that pass between personalization methods, the renderer and callers.

Kept apart from the :class:`~tailorlm.personalize.base.Personalizer` protocol so the
renderer, the registry and the training code can use them without importing the
protocol's module (and so without import cycles). Plain dataclasses, no behaviour
beyond construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tailorlm.models.inputs import ModelInput

if TYPE_CHECKING:
    from tailorlm.data.records import TaskExample

__all__ = [
    "ContextBlock",
    "ContextItem",
    "Contribution",
    "Need",
    "PersonalizedInput",
    "Query",
    "ServedScope",
    "UsageRecord",
]

ServedScope = Literal["user", "persona", "global", "none"]
#: Collaborators a method may need besides the store (see ``MethodConfig.needs``).
Need = Literal["generator", "embedder"]


@dataclass(frozen=True)
class Query:
    """Task input x for a user at a point in time.

    ``timestamp`` is "now" for the query: only the user's data strictly before it
    is eligible (None: everything). ``exclude_doc_ids`` names documents that are
    the query's own answer (evaluation) and must never be retrieved.
    """

    text: str
    task: str = "chat"
    timestamp: int | None = None
    exclude_doc_ids: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_example(cls, example: TaskExample, *, choices: Sequence[str] = ()) -> Query:
        """The query of an evaluation example. Its choices: ``choices``, else the example's
        ``metadata["choices"]``, else the labels its input lists (LaMP-2's ``tags: [...]``)."""
        from tailorlm.tasks.base import TASKS

        if not choices:
            choices = example.metadata.get("choices") or ()
        if not choices and example.task in TASKS:
            choices = TASKS[example.task].choices_in(example.input)
        return cls(
            text=example.input,
            task=example.task,
            timestamp=example.timestamp,
            exclude_doc_ids=(example.doc_id,) if example.doc_id else (),
            choices=tuple(choices),
            metadata=dict(example.metadata),
        )


@dataclass(frozen=True)
class ContextItem:
    """One line of context and where it came from (kept for the usage record).

    ``timestamp`` (Unix seconds) is when the entry was written or happened; the renderer
    shows its UTC date before the text (``[2023-05-08] Caroline: ...``), since "when" is
    part of what a user's history says and questions about time cannot be answered
    without it. None (the default, and what tasks with ``dated_history=False`` set) shows
    no date.
    """

    text: str
    source_id: str | None = None
    score: float | None = None
    label: str | None = None  # e.g. the rating or title attached to a retrieved review
    show_label: bool = True  # False when ``text`` already shows the label (a task's history_format)
    timestamp: int | None = None


@dataclass(frozen=True)
class ContextBlock:
    """A titled group of context lines; items are ordered most relevant first."""

    kind: str  # "history", "profile", "persona", "attributes", "examples", "facts"
    heading: str
    items: tuple[ContextItem, ...]
    priority: int = 0  # under a token budget, higher-priority blocks keep their items first


@dataclass
class Contribution:
    """What one method adds to the model input for one (user, query)."""

    method: str
    blocks: list[ContextBlock] = field(default_factory=list)
    adapter: str | None = None
    scope: ServedScope = "none"
    persona_id: str | None = None
    # Input embeddings (n_tokens x hidden size) prepended to the prompt (PPlug-style user
    # embedding); only the local generator consumes them. ``soft_prompt_info`` says what
    # built them (projector name, history items) for the usage record.
    soft_prompt: Any | None = None
    soft_prompt_info: dict[str, Any] | None = None


@dataclass
class UsageRecord:
    """What personalization was actually used for one call (returned to callers and logged)."""

    methods: list[str]
    scope: ServedScope
    persona_id: str | None = None
    adapter: str | None = None
    retrieved: list[dict[str, Any]] = field(default_factory=list)  # {block, id, score}
    prompt_tokens: int = 0
    dropped_items: int = 0  # context lines cut by the token budget
    soft_prompt: dict[str, Any] | None = None  # e.g. {method, projector, history_items, n_tokens}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class PersonalizedInput(ModelInput):
    """What a personalizer hands the model (messages, adapter, soft prompt: see
    :class:`~tailorlm.models.inputs.ModelInput`) plus what it used.

    ``context`` is the quoted user data that :func:`~tailorlm.personalize.render.render`
    put after the task's system text ("" when nothing was retrieved), kept apart so a
    caller with its own conversation (the chat service) adds it to its own system
    message instead of taking the rendered one apart.
    """

    record: UsageRecord
    blocks: list[ContextBlock] = field(default_factory=list)  # after budget truncation
    context: str = ""
