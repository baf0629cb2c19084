"""The frozen LLM as a text encoder: mean-pooled last hidden states.

Heads trained on top of a frozen model (``llm-text``, ``user-stack-llm``:
:mod:`tailorlm.tasks.text_model`) need one vector per text, not a generation. The
decoder runs without the LM head, without a chat template; padding is on the right and
masked out of the mean, so a text's vector does not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["mean_pooled_states"]


def mean_pooled_states(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_tokens: int = 128, batch_size: int = 16
) -> np.ndarray:
    """float32 (len(texts), hidden size): each text's first ``max_tokens`` tokens through
    ``model``'s decoder, averaged over its tokens. The caller holds the model (eval mode,
    no grad, the adapters it wants); texts are sorted by length so a batch pads little."""
    import torch

    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    eos = [tokenizer.eos_token_id]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] or eos for t in texts]
    out = np.zeros((len(texts), int(model.config.hidden_size)), dtype=np.float32)
    body = model.get_decoder() if hasattr(model, "get_decoder") else model
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(ids[i]) for i in idx)
        rows = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in idx], device=device)
        mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in idx], device=device)
        hidden = body(input_ids=rows, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        out[idx] = ((hidden * m).sum(1) / m.sum(1)).cpu().numpy()
    return out
