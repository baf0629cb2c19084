"""Profile-augmented prompting: who the user is, in a few sentences, ahead of the request.

The summary is written by the generator from the user's most recent history
entries *before the query's time* (so evaluation never summarizes the future),
and cached twice: in memory and as a store artifact keyed by task and a
fingerprint of the entries summarized, so the same snapshot is never summarized
twice and new data yields a new summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from tailorlm.data import USER_ATTRIBUTES, Artifact, User
from tailorlm.models.base import GenerationConfig, Generator
from tailorlm.personalize.base import BasePersonalizer, eligible_history
from tailorlm.personalize.profile.config import ProfileConfig
from tailorlm.personalize.rag.method import entry_item
from tailorlm.personalize.render import item_text
from tailorlm.personalize.types import ContextBlock, ContextItem, Contribution, Query
from tailorlm.retrieval import HistoryEntry
from tailorlm.tasks import Task, get_task

__all__ = ["ProfilePersonalizer", "describe_attributes"]

# How each of the typed attributes (data.records.USER_ATTRIBUTES) reads in a sentence;
# an attribute without a phrase here is written "name: value".
_PHRASES = {
    "age": "age {}",
    "age_band": "age {}",
    "gender": "gender {}",
    "occupation": "works as {}",
    "location": "lives in {}",
}


def describe_attributes(user: User | None) -> str | None:
    """Stored attributes as one plain sentence, or None when there are none.

    Example:
        >>> describe_attributes(User(user_id="u", age=24, occupation="technician", attributes={"plan": "pro"}))
        'The user: age 24, works as technician, plan: pro.'
    """
    if user is None:
        return None
    parts = [
        _PHRASES.get(name, f"{name.replace('_', ' ')}: {{}}").format(v)
        for name in USER_ATTRIBUTES
        if (v := getattr(user, name)) not in (None, "")
    ]
    parts += [f"{k.replace('_', ' ')}: {v}" for k, v in sorted(user.attributes.items()) if v not in (None, "", [])]
    return f"The user: {', '.join(parts)}." if parts else None


class ProfilePersonalizer(BasePersonalizer[ProfileConfig]):
    """Adds a profile block: attributes in words and/or a cached LLM summary of the history."""

    name = "profile"
    config_cls = ProfileConfig
    per_user_state = ("summaries_",)

    def __init__(
        self,
        config: ProfileConfig | None = None,
        *,
        generator: Generator | None = None,
        token_counter: Callable[[str], int] | None = None,
        budget_tokens: int = 1024,
    ) -> None:
        super().__init__(config, token_counter=token_counter, budget_tokens=budget_tokens)
        if self.config.summary and generator is None:
            raise ValueError("ProfileConfig(summary=True) needs a generator to write summaries")
        self.generator = generator

    def _summary(self, user_id: str, task: Task, entries: list[HistoryEntry]) -> tuple[str, str] | None:
        cfg = self.config
        recent = entries[-cfg.summary_items :]
        if not recent:
            return None
        fingerprint = hashlib.sha1("|".join(e.entry_id for e in recent).encode()).hexdigest()[:16]
        key = f"{task.name}:{fingerprint}"
        cache = self.summaries_.setdefault(user_id, {})
        if key in cache:
            return cache[key], key
        store = self._check_fitted()
        art = store.get_artifact(scope="user", owner=user_id, kind="profile", key=key)
        if art is not None:
            cache[key] = art.payload["summary"]
            return cache[key], key
        lines = "\n".join(f"- {item_text(entry_item(e, task, score=None, snippet_chars=200))}" for e in recent)
        messages = [
            {"role": "system", "content": "You describe people from what they wrote, briefly and factually."},
            {
                "role": "user",
                "content": f"Past entries of one user:\n{lines}\n\n"
                "In two sentences, describe this user's tastes and writing style.",
            },
        ]
        assert self.generator is not None
        (text,) = self.generator.generate([messages], config=GenerationConfig(max_new_tokens=cfg.summary_tokens))
        text = text.strip() or "(no summary)"
        store.put_artifact(
            Artifact(
                scope="user",
                owner=user_id,
                kind="profile",
                key=key,
                payload={"summary": text, "entries": [e.entry_id for e in recent]},
                model=getattr(self.generator, "name", None),
            )
        )
        cache[key] = text
        return text, key

    def contribute(self, user_id: str, query: Query) -> Contribution:
        store = self._check_fitted()
        cfg = self.config
        task = get_task(query.task)
        items: list[ContextItem] = []
        if cfg.attributes and (desc := describe_attributes(store.get_user(user_id=user_id))):
            items.append(ContextItem(desc, source_id=f"user:{user_id}"))
        if cfg.summary:
            entries = eligible_history(store, user_id, query)
            if (summary := self._summary(user_id, task, entries)) is not None:
                items.append(ContextItem(summary[0], source_id=f"profile:{summary[1]}"))
        blocks = [ContextBlock("profile", "About this user:", tuple(items), priority=2)] if items else []
        return Contribution(method=self.name, blocks=blocks, scope="user" if items else "none")
