"""Request and response bodies of the HTTP API, so the OpenAPI spec is the behaviour.

Request models are strict (``"ten"`` is not an int, ``"yes"`` is not a bool): a wrong
type is a 422 naming the field rather than a silent coercion. OpenAI request models
ignore fields they do not know (clients send many optional knobs); the user-data
models forbid them, as the records in :mod:`tailorlm.data.records` do.

Stored records are returned as the record models themselves (``User``, ``Document``,
``Interaction``, ``Preference``, ``Fact``), so one definition describes a row everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator

from tailorlm.data import USER_ATTRIBUTES, Document, Fact, Interaction, Preference, User

__all__ = [
    "ChatCompletion",
    "ChatCompletionRequest",
    "ChatMessageIn",
    "CompareRequest",
    "CompareResponse",
    "DeletionResult",
    "DocumentIn",
    "ErrorResponse",
    "ForgetResult",
    "InteractionIn",
    "KeyCreate",
    "KeyCreated",
    "KeyOut",
    "ModelCard",
    "Overview",
    "PreferenceIn",
    "StaleArtifactInfo",
    "TailorlmUsage",
    "UploadResult",
    "UserIn",
]

_STRICT = ConfigDict(strict=True, extra="forbid")
_OPENAI = ConfigDict(strict=True, extra="ignore")


def _integral(value: Any) -> Any:
    """120.0 -> 120: JSON Schema's integers include floats with no fraction, and clients
    (and API fuzzers) send them; strict models would refuse them. Strings stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def Int(ge: int | None = None, le: int | None = None) -> Any:
    """An integer as JSON Schema defines it (what the OpenAPI spec promises): 3 or 3.0, not "3".
    Bounds go inside, so the spec states them as ``minimum`` / ``maximum``."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


#: Unix seconds, or an RFC 3339 date-time (a time without an offset is UTC). Records also
#: take numeric strings and other ISO 8601 forms; the spec promises what every client can
#: rely on, so a schema-valid string is never refused.
Timestamp = (
    Int() | Annotated[str, Field(json_schema_extra={"format": "date-time"}, description="RFC 3339 date-time")] | None
)

#: An id or kind as records accept it: 1-256 characters, not all of them whitespace (records
#: strip it). The pattern means the same to Python, to pydantic's Rust engine and to JSON
#: Schema's ECMA regexes: ECMA's \s leaves out \x1c-\x1f and \x85, which Python strips, and
#: takes in \ufeff, which it does not; so a schema-valid value is never refused as blank.
NONBLANK_PATTERN = r"[^\s\x1c-\x1f\x85]|\ufeff"
RecordId = Annotated[
    str, Field(min_length=1, max_length=256, pattern=NONBLANK_PATTERN, description="not only whitespace")
]

#: A user id that can be a URL path segment: no "/", no control characters (NUL included),
#: and not "." or ".." (clients and proxies resolve those as path steps).
USER_ID_PATTERN = r"^[^/\x00-\x1f\x7f]+$"


def _valid_user_id(value: str) -> str:
    """Refuse ids that could not be addressed as one URL path segment, saying why."""
    if "/" in value:
        raise ValueError(f"user_id {value!r} contains '/', which URL paths would split; choose another id")
    bad = next((c for c in value if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise ValueError(f"user_id contains the control character {bad!r} at position {value.index(bad)}")
    if value in (".", ".."):
        raise ValueError(f"user_id {value!r} would be read as a path step in URLs; choose another id")
    return value


# -- errors -------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body."""

    error: ErrorDetail


# -- OpenAI-compatible ----------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = _OPENAI
    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = _OPENAI
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = _OPENAI
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. ``model``: ``tailorlm/<method spec>`` personalizes
    for ``user`` (e.g. ``tailorlm/rag-bm25+profile``); the backend model's own name passes
    through unpersonalized. A user-scoped key may omit ``user`` (it is the key's user)."""

    model_config = _OPENAI
    model: str = Field(..., min_length=1)
    messages: list[ChatMessageIn] = Field(..., min_length=1)
    user: str | None = Field(None, description="the tailorlm user id whose data personalizes the answer")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Int(1, 4096) | None = None
    max_completion_tokens: Int(1, 4096) | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: Int(0, 2**63 - 1) | None = None
    n: Int(1, 1) = Field(1, description="only one choice is generated")


class RetrievedItem(BaseModel):
    block: str
    id: str | None = None
    score: float | None = None
    text: str | None = Field(None, description="the context line shown to the model (None if redacted)")


class TailorlmUsage(BaseModel):
    """The extension field ``tailorlm``: what personalization was used for this answer."""

    method: str = Field(..., description="the method spec, e.g. 'rag-bm25+profile'")
    user: str
    methods: list[str]
    scope: str = Field(..., description="user | persona | global | none")
    persona_id: str | None = None
    adapter: str | None = None
    retrieved: list[RetrievedItem] = Field(default_factory=list)
    prompt_tokens: int = Field(..., description="tokens of the personalized prompt (system + request)")
    dropped_items: int = 0
    soft_prompt: dict[str, Any] | None = Field(
        None, description="the soft prompt used (softprompt): projector, history items, soft tokens"
    )


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """With ``stream: true`` the same content arrives as ``text/event-stream`` chunks
    (``chat.completion.chunk``), the first one carrying ``tailorlm``, then ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    tailorlm: TailorlmUsage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "tailorlm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- users and their data ---------------------------------------------------------------------


def _attribute(name: str) -> tuple[Any, Any]:
    """A user attribute's type and field for ``UserIn``: integers take 3.0 as well as 3 (bounds kept)."""
    field = User.model_fields[name]
    if field.annotation != (int | None):
        return field.annotation, field
    bounds = {k: getattr(m, k) for m in field.metadata for k in ("ge", "le") if hasattr(m, k)}
    return Int(bounds.get("ge"), bounds.get("le")) | None, Field(None, description=field.description)


def _user_in() -> type[BaseModel]:
    """``UserIn`` is built from :class:`~tailorlm.data.User`'s fields, so the typed attributes
    (``data.records.USER_ATTRIBUTES``, the one list) and their constraints are declared once."""
    attrs = {name: _attribute(name) for name in USER_ATTRIBUTES}
    model = create_model(
        "UserIn",
        __config__=_STRICT,
        user_id=(
            str,
            Field(
                ...,
                min_length=1,
                max_length=256,
                json_schema_extra={"pattern": USER_ID_PATTERN},
                description="1-256 characters; no '/', no control characters, not '.' or '..' "
                "(ids appear in URL paths)",
            ),
        ),
        name=(str | None, None),
        **attrs,  # type: ignore[arg-type]  # pydantic's overloads cannot type a field mapping
        attributes=(dict[str, Any], Field(default_factory=dict)),
        __validators__={"_valid_user_id": field_validator("user_id")(_valid_user_id)},
    )
    model.__doc__ = "Create or update a user (upsert by ``user_id``); fields not given become empty."
    return model


UserIn = _user_in()


class UserList(BaseModel):
    object: Literal["list"] = "list"
    data: list[str] = Field(..., description="user ids (a user-scoped key sees only its own)")
    limit: int
    offset: int


class DocumentIn(BaseModel):
    """A document of the user in the path; ``doc_id`` is derived from the content if absent."""

    model_config = _STRICT
    user_id: str | None = Field(None, description="optional; must equal the user in the path (409 otherwise)")
    doc_id: RecordId | None = None
    doc_kind: RecordId = "document"
    text: str = Field(..., min_length=1)
    title: str | None = None
    rating: float | None = None
    item_id: RecordId | None = None
    timestamp: Timestamp = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class InteractionIn(BaseModel):
    model_config = _STRICT
    user_id: str | None = Field(None, description="optional; must equal the user in the path (409 otherwise)")
    item_id: RecordId
    interaction_id: RecordId | None = None
    interaction: Literal["rating", "click", "purchase", "view", "like", "skip"] = "rating"
    value: float | None = None
    timestamp: Timestamp = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class PreferenceIn(BaseModel):
    """Pair-wise feedback: for ``prompt`` the user prefers ``chosen`` over ``rejected``."""

    model_config = _STRICT
    user_id: str | None = Field(None, description="optional; must equal the user in the path (409 otherwise)")
    pref_id: RecordId | None = None
    prompt: str
    chosen: str
    rejected: str
    dimension: str | None = Field(None, description="e.g. 'conciseness', 'formality'")
    source: str | None = Field(None, description="where the pair came from, e.g. 'workbench'")
    timestamp: Timestamp = None


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Document]
    limit: int
    offset: int
    has_more: bool = Field(..., description="another page follows: ask again with offset + limit")


class InteractionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Interaction]
    limit: int
    offset: int
    has_more: bool = Field(..., description="another page follows: ask again with offset + limit")


class PreferenceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Preference]
    limit: int
    offset: int
    has_more: bool = Field(..., description="another page follows: ask again with offset + limit")


class FactList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Fact]
    limit: int
    offset: int
    has_more: bool = Field(..., description="another page follows: ask again with offset + limit")


class UploadResult(BaseModel):
    user_id: str
    records: int = Field(..., description="records stored (all lines, or none on any error)")
    by_kind: dict[str, int]


class StaleArtifactInfo(BaseModel):
    """A shared artifact that learned from the deleted user and is now marked stale."""

    kind: str = Field(..., description="'adapter' (LoRA, DPO, soft-prompt projector) or 'persona' (a description)")
    scope: str = Field(..., description="global | persona | user (another user's adapter started from a global one)")
    owner: str | None = Field(
        ..., description="the persona id; '' for global; null for another user's adapter (not disclosed)"
    )
    key: str
    name: str | None = Field(None, description="the adapter's load name, when it has one")
    deleted_users: int = Field(..., description="deleted users it learned from")
    stale_since: int = Field(..., description="Unix time of the first of those deletions")

    @classmethod
    def of(cls, art: Any) -> StaleArtifactInfo:
        """From a :class:`~tailorlm.data.StaleArtifact`; another user's id is never disclosed."""
        ref = art.ref
        owner = None if ref.scope == "user" else ref.owner
        return cls(
            kind=ref.kind, scope=ref.scope, owner=owner, key=ref.key, name=art.name,
            deleted_users=art.deleted_users, stale_since=art.stale_since,
        )  # fmt: skip


class DeletionResult(BaseModel):
    user_id: str
    rows: dict[str, int] = Field(..., description="rows removed per table")
    files: list[str] = Field(..., description="artifact files removed")
    keys_deleted: int = Field(..., description="API keys of this user removed")
    stale_artifacts: list[StaleArtifactInfo] = Field(
        default_factory=list,
        description="artifacts that learned from this user, now stale until `tailorlm train retrain-stale`",
    )


class ForgetResult(BaseModel):
    user_id: str
    fact_id: str
    forgotten: int


class CompareRequest(BaseModel):
    model_config = _STRICT
    message: str = Field(..., min_length=1, max_length=20_000)
    method: str = Field("rag-bm25+profile", min_length=1, description="method spec of the personalized answer")
    max_tokens: Int(1, 1024) = 128
    stream: bool = Field(
        False, description="send both answers as server-sent events while they are decoded (see the 200 response)"
    )


class PersonalizedAnswer(BaseModel):
    text: str
    tailorlm: TailorlmUsage


class BaselineAnswer(BaseModel):
    text: str


class CompareResponse(BaseModel):
    personalized: PersonalizedAnswer
    baseline: BaselineAnswer


class Overview(BaseModel):
    """Everything the workbench shows about a user, in one request."""

    user: User
    counts: dict[str, int]
    recent_documents: list[Document] = Field(..., description="newest first")
    facts: list[Fact] = Field(..., description="valid facts remembered from conversations")
    scope: str = Field(..., description="the scope a request would be served at now: user | persona | global | none")
    persona: str | None = Field(None, description="the user's persona id, if any")
    pooled_context: bool = Field(..., description="whether other users' data may fill in for a cold user")


# -- keys ---------------------------------------------------------------------------------------


class KeyCreate(BaseModel):
    model_config = _STRICT
    user_id: str = Field(..., min_length=1, max_length=256, description="the only user this key may access")
    label: str | None = Field(None, max_length=200)


class KeyCreated(BaseModel):
    key: str = Field(..., description="the key itself: shown only in this response, stored only as a hash")
    key_id: str
    role: Literal["admin", "user"]
    user_id: str | None


class KeyOut(BaseModel):
    key_id: str
    role: Literal["admin", "user"]
    user_id: str | None
    label: str | None
    created_at: int
    revoked_at: int | None


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyOut]
