"""Supervised fine-tuning data for adapters: the task's prompt -> the user's real answer.

Why from the task templates: an adapter is used behind the same prompt a method
renders at inference (``render`` of a lone contribution), so it is trained on exactly
that prompt; a mismatch between training and serving prompts would waste the adapter.

Leakage: a user-scope adapter sees only that user's examples strictly before the
cut-off (default: all but their latest example, which is the evaluation query, the
same rule as ``eval.splits``); persona and global adapters see only the training
population's examples. The rows used are hashed into ``data_snapshot`` so a record
says exactly what it was trained on.

DESIGN.md: a plain global rating LoRA learned "always 5" from skewed labels, so
label tasks can be sampled class-balanced (:func:`batch_order`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tailorlm.data import Store, TaskExample

__all__ = [
    "SFTExample",
    "batch_order",
    "data_snapshot",
    "encode_sft",
    "is_held_out_latest",
    "persona_members",
    "population_examples",
    "sft_examples",
    "trim_middle",
    "user_examples",
]


@dataclass(frozen=True)
class SFTExample:
    """One training row: the chat prompt the method would render, and the answer to learn."""

    messages: tuple[tuple[str, str], ...]  # (role, content), hashable and JSON-stable
    target: str
    user_id: str
    example_id: str
    timestamp: int | None = None
    history_items: int = 0  # the user's past entries quoted in the prompt (RAG fine-tuning)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


def _order(ex: TaskExample) -> tuple[bool, int, str]:
    return (ex.timestamp is None, ex.timestamp or 0, ex.example_id)


def _trainable(ex: TaskExample) -> bool:
    """Labelled and not held out by the dataset itself: an example of a published dev or test
    split (LaMP) is never training data, even when its user is also in the train split."""
    return bool(ex.target) and ex.metadata.get("split") not in ("dev", "test")


def user_examples(
    store: Store, task: str, user_id: str, *, before: int | None = None, exclude_latest: bool = True
) -> list[TaskExample]:
    """The user's examples of ``task`` a user-scope adapter may learn from, oldest first.

    ``before`` given: only examples with a timestamp strictly before it. Otherwise all
    but the latest one when ``exclude_latest`` (that one is the evaluation query).
    """
    exs = sorted((e for e in store.get_examples(task=task, user_id=user_id) if _trainable(e)), key=_order)
    if before is not None:
        return [e for e in exs if e.timestamp is not None and e.timestamp < before]
    return exs[:-1] if exclude_latest else exs


def is_held_out_latest(store: Store, example: TaskExample) -> bool:
    """Whether ``example`` is the one a user-scope trainer holds out by default (the user's
    latest trainable example): the only way an undated evaluation query stays out of training."""
    exs = user_examples(store, example.task, example.user_id, exclude_latest=False)
    return bool(exs) and exs[-1].example_id == example.example_id


def population_examples(store: Store, task: str, users: Sequence[str] | None) -> list[TaskExample]:
    """All examples of ``task`` of the population ``users`` (None: every user), oldest first."""
    exs = [e for e in store.get_examples(task=task) if _trainable(e)]
    if users is not None:
        keep = set(users)
        exs = [e for e in exs if e.user_id in keep]
    return sorted(exs, key=lambda e: (e.user_id, *_order(e)))


def sft_examples(examples: Sequence[TaskExample]) -> list[SFTExample]:
    """Render each example's prompt exactly as a lone adapter method would at inference."""
    from tailorlm.personalize.render import render
    from tailorlm.personalize.types import Contribution, Query

    out: list[SFTExample] = []
    for ex in examples:
        query = Query.from_example(ex)
        messages = render([Contribution(method="adapter")], query).messages
        out.append(
            SFTExample(
                messages=tuple((m["role"], m["content"]) for m in messages),
                target=str(ex.target),
                user_id=ex.user_id,
                example_id=ex.example_id,
                timestamp=ex.timestamp,
            )
        )
    return out


def data_snapshot(rows: Sequence[SFTExample]) -> str:
    """sha256 of the exact rows (prompts and targets) a model was trained on."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r.user_id, r.example_id, r.messages, r.target]).encode())
    return h.hexdigest()


def batch_order(
    rows: Sequence[SFTExample], *, steps: int, batch_size: int, seed: int = 0, balanced: bool = False
) -> list[list[int]]:
    """Row indices for each of ``steps`` batches.

    Plain: shuffled epochs, so every row is seen before any repeats. Balanced: each
    slot first draws a target label uniformly, then a row with that label, so a skewed
    label distribution (mostly 5-star) cannot dominate what the adapter learns.
    """
    if not rows:
        raise ValueError("no training rows: nothing to build batches from")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    rng = random.Random(seed)
    total = steps * batch_size
    if balanced:
        by_label: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            by_label[r.target].append(i)
        labels = sorted(by_label)
        flat = [rng.choice(by_label[rng.choice(labels)]) for _ in range(total)]
    else:
        flat = []
        while len(flat) < total:
            epoch = list(range(len(rows)))
            rng.shuffle(epoch)
            flat += epoch
    return [flat[s * batch_size : (s + 1) * batch_size] for s in range(steps)]


def encode_sft(tokenizer: Any, row: SFTExample, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt): the loss is on the answer tokens only.
    Too long: the prompt loses tokens from its middle (the long user content), keeping the
    start (system message and instruction) and the end (the question and the assistant
    turn's header); the answer is kept."""
    prompt = tokenizer.apply_chat_template(row.chat(), add_generation_prompt=True, return_dict=True)["input_ids"]
    answer = tokenizer(row.target, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer = [*answer, tokenizer.eos_token_id]  # learn to stop after the answer
    answer = answer[: max_length // 2] if len(answer) > max_length // 2 else answer
    prompt = trim_middle(prompt, max_length - len(answer))
    return prompt + answer, [-100] * len(prompt) + answer


def trim_middle(ids: list[int], budget: int, *, head_share: float = 0.25) -> list[int]:
    """At most ``budget`` ids: the first quarter of the budget and the rest from the end."""
    if len(ids) <= budget:
        return ids
    head = int(budget * head_share)
    return ids[:head] + ids[len(ids) - (budget - head) :]


def persona_members(
    store: Store,
    persona_id: str,
    population: Sequence[str],
    *,
    persona_by: str | None = None,
    n_clusters: int = 8,
    embedder: Any = None,
    seed: int = 0,
) -> list[str]:
    """The population's members of ``persona_id`` ("attribute=value" or "cluster=k"), found the way
    the methods find a user's persona at inference (:class:`~tailorlm.personalize.granularity.Granularity`)."""
    from tailorlm.personalize.granularity import Granularity

    if "=" not in persona_id and persona_by is None:
        raise ValueError(f"persona id {persona_id!r} is not 'attribute=value' and no persona_by option was given")
    attr = persona_by or persona_id.partition("=")[0]
    gran = Granularity(persona_by=attr, n_clusters=n_clusters, embedder=embedder, seed=seed)
    gran.fit(store, list(population))
    members = sorted(gran.members_.get(persona_id, []))
    if not members:
        raise ValueError(f"persona {persona_id!r} has no members in the population; known: {sorted(gran.members_)}")
    return members
