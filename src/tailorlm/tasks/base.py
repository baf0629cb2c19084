"""Task definitions: how to ask for an answer and how to read it back.

A :class:`Task` knows its instruction template, its answer space (free text,
ratings, labels, a ranking), which part of a user's history is relevant
(documents of some kind, or interactions with items) and what each history
entry's "answer" is (the rating given, the title written), which is what makes
retrieved history usable as personal few-shot evidence.

Not here: choosing history (``retrieval``) and rendering context (``personalize``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tailorlm.tasks.parsing import parse_label, parse_ranking, parse_rating

__all__ = ["TASKS", "Task", "get_task"]

TaskKind = Literal["generation", "rating", "classification", "ranking"]


@dataclass(frozen=True)
class Task:
    """One task: its prompt, answer space and relevant history.

    Args:
        name: registry key, equal to ``TaskExample.task`` for examples of this task.
        kind: generation | rating | classification | ranking.
        instruction: the user message; ``{input}`` is the query text, ``{choices}`` the labels/candidates.
        history_source: 'documents', 'interactions', 'both' (those two), 'facts' (memory) or 'all':
            where the user's relevant history lives.
        history_kind: restrict documents to this ``doc_kind`` (None: all).
        history_label: which field of a history entry is the user's answer ('rating', 'title', 'value' or None).
        labels: the allowed answers for rating/classification.
        max_new_tokens: a generation budget that fits the answer.
    """

    name: str
    kind: TaskKind
    instruction: str
    history_source: Literal["documents", "interactions", "both", "facts", "all"] = "documents"
    history_kind: str | None = None
    history_label: Literal["rating", "title", "value"] | None = None
    labels: tuple[str, ...] = ()
    max_new_tokens: int = 64
    system: str = "You are a helpful assistant."

    def request(self, text: str, choices: tuple[str, ...] = ()) -> str:
        opts = choices or self.labels
        rendered = "\n".join(f"[{i}] {c}" for i, c in enumerate(opts, 1)) if self.kind == "ranking" else ", ".join(opts)
        return self.instruction.format(input=text, choices=rendered)

    def parse(self, output: str, choices: tuple[str, ...] = ()) -> str | list[str] | None:
        """The answer in canonical form, or None when the output is unusable."""
        if self.kind == "rating":
            lo, hi = int(self.labels[0]), int(self.labels[-1])
            r = parse_rating(output, low=lo, high=hi)
            return None if r is None else str(r)
        if self.kind == "classification":
            return parse_label(output, choices or self.labels)
        if self.kind == "ranking":
            return parse_ranking(output, choices)
        text = output.strip().strip('"').strip()
        return text or None


_STARS = tuple(str(i) for i in range(1, 6))

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "amazon-rating",
            "rating",
            "What star rating (1 to 5) did the author give together with this product review? "
            "Answer with a single digit.\n\nReview: {input}",
            history_kind="review",
            history_label="rating",
            labels=_STARS,
            max_new_tokens=4,
        ),
        Task(
            "amazon-title",
            "generation",
            "Write a short title for this product review, in the author's own style. "
            "Answer with the title only.\n\nReview: {input}",
            history_kind="review",
            history_label="title",
            max_new_tokens=24,
        ),
        Task(
            "review-text",
            "generation",
            "Write a product review for: {input}",
            history_kind="review",
            max_new_tokens=160,
        ),
        Task(
            "personachat-response",
            "generation",
            "You are chatting with a partner. Reply to their message in one short sentence, "
            "in character.\n\nPartner: {input}",
            max_new_tokens=40,
        ),
        Task(
            "popquorn-offensiveness",
            "rating",
            "How offensive do you find this comment, from 1 (not offensive at all) to 5 "
            "(very offensive)? Answer with a single digit.\n\nComment: {input}",
            history_source="interactions",
            history_label="value",
            labels=_STARS,
            max_new_tokens=4,
        ),
        Task(
            "movielens-rating",
            "rating",
            "How many stars (1 to 5) would this user give the movie below? Answer with a single "
            "digit.\n\nMovie: {input}",
            history_source="interactions",
            history_label="value",
            labels=_STARS,
            max_new_tokens=4,
        ),
        Task(
            "recommendation",
            "ranking",
            "Rank these candidates by how much this user would enjoy them, best first. Answer with "
            "the numbers in order.\n\n{choices}",
            history_source="interactions",
            history_label="value",
            max_new_tokens=48,
        ),
        Task("lamp-1", "classification", "{input}", history_label="title", labels=("[1]", "[2]"), max_new_tokens=4),
        Task("lamp-2", "classification", "{input}", history_label="title", max_new_tokens=8),
        Task("lamp-3", "rating", "{input}", history_label="rating", labels=_STARS, max_new_tokens=4),
        Task("lamp-4", "generation", "{input}", history_label="title", max_new_tokens=24),
        Task("lamp-5", "generation", "{input}", history_label="title", max_new_tokens=24),
        Task("lamp-6", "generation", "{input}", history_label="title", max_new_tokens=24),
        Task("lamp-7", "generation", "{input}", max_new_tokens=48),
        Task("chat", "generation", "{input}", history_source="all", history_label="value", max_new_tokens=128),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]
