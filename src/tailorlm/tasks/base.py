"""Task definitions: how to ask for an answer and how to read it back.

A :class:`Task` knows its instruction template, its answer space (free text,
ratings, labels, a ranking), which part of a user's history is relevant
(documents of some kind, or interactions with items) and what each history
entry's "answer" is (the rating given, the title written), which is what makes
retrieved history usable as personal few-shot evidence.

Not here: choosing history (``retrieval``) and rendering context (``personalize``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tailorlm.data.loaders.locomo import ABSTAIN_ANSWER
from tailorlm.tasks.parsing import parse_label, parse_ranking, parse_rating

__all__ = ["TASKS", "Task", "get_task"]

TaskKind = Literal["generation", "rating", "classification", "ranking", "qa"]


@dataclass(frozen=True)
class Task:
    """One task: its prompt, answer space and relevant history.

    Args:
        name: registry key, equal to ``TaskExample.task`` for examples of this task.
        kind: generation | rating | classification | ranking | qa (a short answer to a question
            about the user's own history, scored against a reference answer and the evidence
            the history holds: memory QA such as LoCoMo).
        instruction: the user message; ``{input}`` is the query text, ``{choices}`` the labels/candidates.
        history_source: 'documents', 'interactions', 'both' (those two), 'facts' (memory) or 'all':
            where the user's relevant history lives.
        history_kind: restrict documents to this ``doc_kind`` (None: all).
        history_label: which field of a history entry is the user's answer ('rating', 'title',
            'value', 'label' (a document's categorical label, e.g. a LaMP-2 tag) or None).
        labels: the allowed answers for rating/classification.
        max_new_tokens: a generation budget that fits the answer.
        history_format: how one history entry is shown (``{text}``, ``{title}``, ``{label}``,
            ``{kind}``), with the user's answer inside the line, as the LaMP paper's per-task
            profile formats do; None: ``text -> label``.
        content_pattern: a regex whose ``content`` group marks the variable part of an input
            that carries its own instruction (LaMP questions); calibration's content-free
            input replaces only those parts, so the instruction survives.
        choices_pattern: a regex whose ``choices`` group is the comma-separated label list
            written inside the input (LaMP-2's ``tags: [...]``): the per-question labels.
        dated_history: show each history line's date (``[2023-05-08] ...``) when the entry has a
            timestamp: when something happened is part of what the user's history says. False
            where the prompt format is a published protocol without dates (LaMP) or where the
            timestamps only order entries (Persona-Chat numbers its turns 1, 2, 3...).
    """

    name: str
    kind: TaskKind
    instruction: str
    history_source: Literal["documents", "interactions", "both", "facts", "all"] = "documents"
    history_kind: str | None = None
    history_label: Literal["rating", "title", "value", "label"] | None = None
    labels: tuple[str, ...] = ()
    max_new_tokens: int = 64
    system: str = "You are a helpful assistant."
    history_format: str | None = None
    content_pattern: str | None = None
    choices_pattern: str | None = None
    dated_history: bool = True

    def request(self, text: str, choices: tuple[str, ...] = ()) -> str:
        opts = choices or self.labels
        rendered = "\n".join(f"[{i}] {c}" for i, c in enumerate(opts, 1)) if self.kind == "ranking" else ", ".join(opts)
        return self.instruction.format(input=text, choices=rendered)

    def choices_in(self, text: str) -> tuple[str, ...]:
        """The labels the input itself lists (``choices_pattern``), in order; () when none."""
        m = re.search(self.choices_pattern, text) if self.choices_pattern else None
        if m is None:
            return ()
        return tuple(dict.fromkeys(c.strip() for c in m.group("choices").split(",") if c.strip()))

    def content_of(self, text: str) -> str:
        """The variable part(s) of an input (``content_pattern``), else the whole input: what
        retrieval matches against, so the instruction's words ("generate", "article") do not
        decide which history entries look relevant."""
        if self.content_pattern:
            parts = [m.group("content") for m in re.finditer(self.content_pattern, text)]
            if parts:
                return " ".join(parts)
        return text

    def content_free_request(self, request: str, choices: tuple[str, ...] = ()) -> str:
        """The request with its variable content replaced by "N/A" and its instruction kept
        (contextual calibration's content-free input, Zhao et al. 2021)."""
        if self.content_pattern:
            pattern = re.compile(self.content_pattern)
            if pattern.search(request):
                return pattern.sub(_blank_content, request)
        return self.request("N/A", choices)

    def reorder_choices(self, request: str, labels: Sequence[str], order: Sequence[str]) -> str | None:
        """``request`` with its listed labels rewritten in ``order`` (to average out position
        bias), or None when the request does not show the labels as a list it can rewrite."""
        if self.choices_pattern and (m := re.search(self.choices_pattern, request)):
            start, end = m.span("choices")
            return request[:start] + ", ".join(order) + request[end:]
        listed = ", ".join(labels)
        if len(labels) > 1 and listed in request:
            return request.replace(listed, ", ".join(order), 1)
        return None

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


def _blank_content(m: re.Match[str]) -> str:
    start, end = m.span("content")
    return m.string[m.start() : start] + "N/A" + m.string[end : m.end()]


_STARS = tuple(str(i) for i in range(1, 6))

# LaMP (Salemi et al. 2023): every question carries its own instruction; the profile item
# formats are the paper's per-task prompt formats; the content patterns follow the
# published question wording ("... review: <text>", "... article: <text>", quoted titles).
# The published prompts show no dates, so history lines stay undated (dated_history=False).
_TAIL = r"\s*:\s*(?P<content>\S.*)$"
_LAMP = (
    Task("lamp-1", "classification", "{input}", history_label="title", labels=("[1]", "[2]"), max_new_tokens=4,
         history_format='"{title}"', content_pattern=r'"(?P<content>[^"]+)"', dated_history=False),
    Task("lamp-2", "classification", "{input}", history_label="label", max_new_tokens=16,
         history_format='the tag for the {kind}: "{text}" is "{label}"',
         content_pattern=r"(?is)\b(?:description|article)" + _TAIL,
         choices_pattern=r"(?i)\b(?:tags|categories)\s*:\s*\[(?P<choices>[^\]]*)\]", dated_history=False),
    Task("lamp-3", "rating", "{input}", history_label="rating", labels=_STARS, max_new_tokens=4,
         history_format='{label} is the score for "{text}"', content_pattern=r"(?is)\breview" + _TAIL,
         dated_history=False),
    Task("lamp-4", "generation", "{input}", history_label="title", max_new_tokens=24,
         history_format='"{label}" is the title for "{text}"', content_pattern=r"(?is)\barticle" + _TAIL,
         dated_history=False),
    Task("lamp-5", "generation", "{input}", history_label="title", max_new_tokens=24,
         history_format='"{label}" is the title for "{text}"', content_pattern=r"(?is)\bpaper" + _TAIL,
         dated_history=False),
    Task("lamp-6", "generation", "{input}", history_label="title", max_new_tokens=24,
         history_format='"{label}" is the title for "{text}"', content_pattern=r"(?is)\bemail" + _TAIL,
         dated_history=False),
    Task("lamp-7", "generation", "{input}", max_new_tokens=48, history_format='"{text}"',
         content_pattern=r"(?is)\btweet\b[^:]*" + _TAIL, dated_history=False),
)  # fmt: skip

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
            dated_history=False,  # the loader's timestamps are turn numbers, not times
        ),
        Task(
            "locomo-qa",
            "qa",
            "Answer this question about the user's conversations in a short phrase, with exact words "
            "from the quoted conversation where possible. For when something happened, give the date, "
            "working it out from the dates on the lines. If the conversation does not say, answer "
            f'"{ABSTAIN_ANSWER}".\n\nQuestion: {{input}}',
            system="You are a helpful assistant with a memory of the user's conversations.",
            max_new_tokens=32,
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
        *_LAMP,
        Task("chat", "generation", "{input}", history_source="all", history_label="value", max_new_tokens=128),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]
