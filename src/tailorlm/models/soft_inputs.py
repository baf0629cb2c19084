"""Input embeddings for prompts that start with a soft prompt (a user embedding as tokens).

Shared by generation and scoring (:mod:`tailorlm.models.local`) and soft-prompt training
(:mod:`tailorlm.personalize.softprompt.train`), so training and inference lay rows out alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["soft_prompt_inputs"]


def soft_prompt_inputs(
    embedding: Any, token_rows: Sequence[Sequence[int]], soft: Sequence[Any], *, pad_token_id: int
) -> tuple[Any, Any, Any]:
    """Input embeddings for rows that start with a soft prompt: ``[pad.. | soft | tokens]``.

    The soft tokens go at the very front of each row, before the chat template's first
    token, as in PPlug (the user embedding is prepended to the whole input): the template
    and the task text stay exactly as the model was tuned on, and the position is the
    same for every task and pipeline. Rows are left-padded (the generator's convention,
    so new tokens start at the same column); padding sits before the soft tokens and is
    masked out. Returns ``(inputs_embeds, attention_mask, position_ids)`` with positions
    counted from each row's first real (soft) token, as ``generate`` derives them from the
    mask. Gradients flow into ``soft`` (training uses this too).
    """
    import torch

    if len(token_rows) != len(soft):
        raise ValueError(f"{len(token_rows)} token rows but {len(soft)} soft prompts")
    weight = embedding.weight
    lengths = [len(ids) + sp.shape[0] for ids, sp in zip(token_rows, soft, strict=True)]
    width = max(lengths)
    pad = embedding(torch.tensor([pad_token_id], device=weight.device))[0]
    rows, masks = [], []
    for ids, sp, n in zip(token_rows, soft, lengths, strict=True):
        tok = embedding(torch.tensor(list(ids), dtype=torch.long, device=weight.device))
        parts = [pad.expand(width - n, -1), sp.to(device=weight.device, dtype=weight.dtype), tok]
        rows.append(torch.cat(parts, dim=0))
        masks.append([0] * (width - n) + [1] * n)
    mask = torch.tensor(masks, device=weight.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return torch.stack(rows), mask, positions
