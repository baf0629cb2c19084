"""Prefill several prompts in one pass laid end to end, without padding (packed prefill).

Prefill on a CPU is compute-bound and a bf16 matrix product runs faster on more rows (AMX
here: ~0.65 TFLOPS on the 130 rows of one prompt, ~1 TFLOPS on 1,000), so a burst of
arrivals is cheaper in one pass than one after another. Left-padding them to the longest
wastes the padding's compute; laying them end to end does not. Measured in bf16 on this
project's machines (``benchmarks/bench_prefill.py``, RESULTS.md): nine prompts of 93-191
tokens on eight LoRA adapters 1,617 ms one after another, 1,116 ms left-padded in one pass,
928 ms packed.

How it runs inside a transformers model: the prompts form one row whose position ids
restart at 0 for each prompt; an attention function registered with transformers'
``AttentionInterface`` (:data:`ATTENTION`) runs causal attention on each prompt's span
alone, so no prompt sees another. Because it has no mask function, transformers builds no
(tokens x tokens) mask for the pass. The model's ``config._attn_implementation`` names it
for that one pass only (the caller holds the model's lock). The last position of each span
gives that prompt's logits (``logits_to_keep`` as indices), and :func:`split_cache` turns
the row's cache into one left-padded row per prompt, the layout of the decode batch.

Only for models whose layers all use full causal attention (the decode batch refuses
others); each span's result is the prompt's own, so greedy answers match one at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["ATTENTION", "Packing", "packed_attention", "split_cache", "supports_packing"]

ATTENTION = "tailorlm_packed"


def _packed_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None, **kwargs: Any
) -> tuple[Any, None]:
    """Causal attention within each span of ``kwargs["packed_spans"]`` ((start, end) token
    offsets into the one packed row); returns (1, tokens, heads, head_dim) as transformers'
    attention functions do."""
    import torch
    import torch.nn.functional as F

    spans = kwargs.get("packed_spans")
    if spans is None:
        raise RuntimeError(f"the {ATTENTION!r} attention runs only inside a packed prefill")
    gqa = query.shape[1] != key.shape[1]
    out = [
        F.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, scale=scaling, enable_gqa=gqa
        )
        for s, e in spans
    ]
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


_registered = False


def _register() -> None:
    """Register :data:`ATTENTION` with transformers, once (lazily: importing this module
    does not import transformers)."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTENTION, _packed_attention)
        _registered = True


def supports_packing(model: Any) -> bool:
    """Whether ``model`` (a transformers model) can be prefilled packed: it routes attention
    through transformers' ``AttentionInterface`` (else it would ignore the spans and let
    prompts see each other), and every layer is plain causal attention (no sliding window,
    no logit soft-capping)."""
    config = model.config
    if not getattr(type(model), "_supports_attention_backend", False):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    if getattr(config, "attn_logit_softcapping", None):
        return False
    return all(t == "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"])


class Packing:
    """Where each prompt of a packed pass lies: built from the prompts' token ids."""

    def __init__(self, ids: Sequence[Sequence[int]]) -> None:
        import torch

        self.lengths = [len(i) for i in ids]
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError("packed prefill needs at least one prompt, each of at least one token")
        ends = list(itertools.accumulate(self.lengths))
        self.spans = [(e - n, e) for e, n in zip(ends, self.lengths, strict=True)]
        self.tokens = ends[-1]
        self.width = max(self.lengths)
        # (prompts * width) -> packed position (left padding -> the extra zero row ``tokens``)
        rows = []
        for (s, _), n in zip(self.spans, self.lengths, strict=True):
            rows.extend([self.tokens] * (self.width - n) + list(range(s, s + n)))
        self.to_rows = torch.tensor(rows)
        # packed position -> its place in (prompts * width)
        self.to_tokens = torch.tensor(
            [i * self.width + (self.width - n) + j for i, n in enumerate(self.lengths) for j in range(n)]
        )

    def inputs(self, ids: Sequence[Sequence[int]], device: Any) -> dict[str, Any]:
        """The packed row's forward arguments (without the cache)."""
        import torch

        flat = [t for i in ids for t in i]
        positions = [p for n in self.lengths for p in range(n)]
        return {
            "input_ids": torch.tensor([flat], device=device),
            "position_ids": torch.tensor([positions], device=device),
            "logits_to_keep": torch.tensor([e - 1 for _, e in self.spans], device=device),
            "packed_spans": self.spans,
        }

    def mask(self, device: Any) -> Any:
        """(prompts, width): 0 for left padding, 1 for a real token, as the decode batch keeps it."""
        import torch

        return torch.tensor([[0] * (self.width - n) + [1] * n for n in self.lengths], device=device)

    def to_padded_rows(self, x: Any) -> Any:
        """(1, tokens, *features) -> (prompts, width, *features), left-padded with zeros."""
        import torch

        flat = torch.cat([x[0], x.new_zeros(1, *x.shape[2:])])
        return flat.index_select(0, self.to_rows.to(flat.device)).view(len(self.lengths), self.width, *x.shape[2:])

    def to_packed(self, rows: Any) -> Any:
        """(prompts, width, features) -> (1, tokens, features)."""
        flat = rows.reshape(-1, *rows.shape[2:])
        return flat.index_select(0, self.to_tokens.to(flat.device))[None]


def split_cache(cache: Any, packing: Packing) -> None:
    """Turn the packed row's cache (1, heads, tokens, dim per layer) into one left-padded row
    per prompt (prompts, heads, width, dim), in place."""
    for layer in cache.layers:
        for name in ("keys", "values"):
            rows = packing.to_padded_rows(getattr(layer, name).transpose(1, 2))  # (prompts, width, heads, dim)
            setattr(layer, name, rows.transpose(1, 2).contiguous())


@contextmanager
def packed_attention(config: Any) -> Iterator[None]:
    """``config`` names :data:`ATTENTION` for the pass run inside (the caller holds the lock)."""
    _register()
    was = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = was
