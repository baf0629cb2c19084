"""The one hand-off from personalized model input to a generator.

A personalization method produces, per row, chat messages plus optionally an adapter
name and a soft prompt (input embeddings). :class:`ModelInput` carries exactly that, and
:func:`generate_inputs` / :func:`score_inputs` are the only places that turn a batch of
them into a generator call, so every caller (the service, the CLI, the demo, the task
predictors) passes the adapter and the soft prompt the same way. Generators that know
nothing of soft prompts are called without the argument when no row carries one.

What this module leaves out: building the messages (``personalize.render``) and choosing
the adapter (the methods); it only hands over what they decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tailorlm.models.base import GenerationConfig, Generator

__all__ = ["ModelInput", "generate_inputs", "input_kwargs", "score_inputs"]


@dataclass
class ModelInput:
    """Everything a generator needs for one row.

    Args:
        messages: the chat to answer (system context + the user's turn(s)).
        adapter: a loaded LoRA adapter's name, or None for the base model.
        soft_prompt: (n_tokens, hidden size) input embeddings prepended to the prompt
            (PPlug-style), or None; only generators with soft-prompt support accept it.
    """

    messages: list[dict[str, str]]
    adapter: str | None = None
    soft_prompt: Any | None = None


def input_kwargs(inputs: Sequence[ModelInput], *, repeat: int = 1) -> dict[str, Any]:
    """The ``adapter=`` and ``soft_prompt=`` arguments for a batch of ``inputs``, each row
    repeated ``repeat`` times (a calibration row scored beside its input shares its
    personalization). Arguments no row needs are left out."""
    kwargs: dict[str, Any] = {}
    adapters = [p.adapter for p in inputs for _ in range(repeat)]
    if any(adapters):
        kwargs["adapter"] = adapters
    soft = [p.soft_prompt for p in inputs for _ in range(repeat)]
    if any(s is not None for s in soft):
        kwargs["soft_prompt"] = soft
    return kwargs


def generate_inputs(
    generator: Generator, inputs: Sequence[ModelInput], *, config: GenerationConfig | None = None
) -> list[str]:
    """Answer each input with its own adapter and soft prompt, in one generator call."""
    if not inputs:
        return []
    return generator.generate([p.messages for p in inputs], config=config, **input_kwargs(inputs))


def score_inputs(
    scorer: Any, inputs: Sequence[ModelInput], choices: Sequence[str], *, extra: Sequence[list[dict[str, str]]] = ()
) -> Any:
    """Log-probabilities of ``choices`` for one input's messages followed by ``extra``
    conversations that share its adapter and soft prompt (e.g. a content-free row for
    calibration). ``inputs`` must hold exactly one row; returns (1 + len(extra), len(choices))."""
    if len(inputs) != 1:
        raise ValueError(f"score_inputs takes one input (plus its extra rows), got {len(inputs)}")
    row = inputs[0]
    batch = [row.messages, *extra]
    kwargs = input_kwargs(inputs, repeat=len(batch))
    return scorer.score_choices(batch, choices, **kwargs)
