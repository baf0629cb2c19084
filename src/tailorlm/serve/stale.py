"""Refusing stale shared artifacts: ``[serve] refuse_stale_artifacts = true``.

Why: after a user is deleted, the shared adapters, soft-prompt projectors and persona
descriptions that learned from them are marked stale (``tailorlm.data.provenance``) but
still work. An operator who must not serve anything derived from deleted data until it
is rebuilt turns this setting on; then a request whose personalization *used* a stale
artifact is answered 503 (code ``stale_artifact``), naming the artifact and the command
that fixes it (``tailorlm train retrain-stale``). Requests that use no stale artifact are
served as before, so only the affected method specs stop working.

Why 503 and not 409: nothing in the request is wrong and the client cannot change
anything about it; the service cannot serve that method until an operator acts, which is
what 503 (Service Unavailable) says. The error names what to run; no ``Retry-After``,
since the wait depends on the operator, not on load.

What "used" means is read from the personalization's usage record: its adapter (``lora``,
``dpo``), its soft prompt's projector (``softprompt``), the dimension adapters a ``soups``
mix was merged from, and a persona block quoting a stored persona description.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailorlm.serve.errors import ApiError

if TYPE_CHECKING:
    from tailorlm.data import StaleArtifact, Store
    from tailorlm.personalize.types import PersonalizedInput

__all__ = ["CODE", "check_stale", "stale_in_use"]

CODE = "stale_artifact"


def _used(pers: PersonalizedInput) -> tuple[set[str], set[str]]:
    """(adapter and projector names, persona ids whose description was quoted) of ``pers``."""
    record = pers.record
    names = {n for n in (record.adapter, pers.adapter, (record.soft_prompt or {}).get("projector")) if n}
    personas: set[str] = set()
    for r in record.retrieved:
        rid = str(r.get("id") or "")
        if r.get("block") == "soups" and ":" in rid:
            names.add(rid.split(":", 1)[1])  # "<dimension>:<adapter name>"
        elif r.get("block") == "persona" and rid.startswith("persona:"):
            personas.add(rid.removeprefix("persona:"))
    return {n for n in names if isinstance(n, str)}, personas


def stale_in_use(store: Store, pers: PersonalizedInput) -> list[StaleArtifact]:
    """The stale artifacts this personalization used (empty: it may be served)."""
    names, personas = _used(pers)
    if not names and not personas:
        return []
    return [
        a
        for a in store.stale_artifacts()
        if (a.name is not None and a.name in names) or (a.ref.kind == "persona" and a.ref.owner in personas)
    ]


def check_stale(store: Store, pers: PersonalizedInput) -> None:
    """Raise the documented 503 when ``pers`` used a stale artifact.

    Raises:
        ApiError: 503, code ``stale_artifact``; the message names each artifact, says
            why it is stale and that the operator must run ``tailorlm train retrain-stale``.
    """
    stale = stale_in_use(store, pers)
    if not stale:
        return
    what = "; ".join(a.describe() for a in stale)
    raise ApiError(
        503,
        f"this request would use a stale shared artifact: {what}. The service is set to refuse stale "
        "artifacts (serve.refuse_stale_artifacts); an operator must rebuild them without the deleted "
        "users: tailorlm train retrain-stale",
        type="service_unavailable",
        code=CODE,
    )
