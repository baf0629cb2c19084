"""Packed prefill's layout and attention on a tiny random Llama (fp32): each prompt of a packed
pass gets the logits and cache it gets alone. The real model's packed prefill is tested through
the decode batch (``test_continuous.py``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tailorlm.models.packed import Packing, packed_attention, split_cache, supports_packing

IDS = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]


def _tiny(cls_name: str = "Llama", **extra: Any) -> Any:
    import transformers

    config = getattr(transformers, f"{cls_name}Config")(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, **extra,
    )  # fmt: skip
    torch.manual_seed(0)
    return getattr(transformers, f"{cls_name}ForCausalLM")(config).eval()


def test_layout_round_trips_and_masks_the_padding() -> None:
    packing = Packing(IDS)
    assert packing.spans == [(0, 3), (3, 8), (8, 9)] and packing.tokens == 9 and packing.width == 5
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 9, 1).repeat(1, 1, 2)
    rows = packing.to_padded_rows(x)
    assert rows.shape == (3, 5, 2)
    assert rows[0, :, 0].tolist() == [0, 0, 1, 2, 3]  # left-padded with zeros
    assert rows[2, :, 0].tolist() == [0, 0, 0, 0, 9]
    assert torch.equal(packing.to_packed(rows), x)
    assert packing.mask("cpu").tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]
    inputs = packing.inputs(IDS, "cpu")
    assert inputs["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 0]]
    assert inputs["logits_to_keep"].tolist() == [2, 7, 8]
    with pytest.raises(ValueError, match="at least one token"):
        Packing([[1], []])


def test_each_packed_prompt_gets_its_own_logits_and_cache() -> None:
    from transformers import DynamicCache

    model = _tiny()
    packing = Packing(IDS)
    with torch.inference_mode(), packed_attention(model.config):
        out = model(**packing.inputs(IDS, "cpu"), past_key_values=DynamicCache(config=model.config), use_cache=True)
    assert model.config._attn_implementation != "tailorlm_packed"  # restored after the pass
    split_cache(out.past_key_values, packing)
    for k, ids in enumerate(IDS):
        with torch.inference_mode():
            alone = model(input_ids=torch.tensor([ids]), use_cache=True)
        torch.testing.assert_close(out.logits[0, k], alone.logits[0, -1], rtol=1e-5, atol=1e-5)
        for packed, single in zip(out.past_key_values.layers, alone.past_key_values.layers, strict=True):
            n = len(ids)
            torch.testing.assert_close(packed.keys[k, :, packing.width - n :], single.keys[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(packed.values[k, :, packing.width - n :], single.values[0], rtol=1e-5, atol=1e-5)
            assert not packed.keys[k, :, : packing.width - n].any()  # the padding holds zeros


def test_only_plain_causal_attention_through_transformers_interface_is_packed() -> None:
    assert supports_packing(_tiny())
    assert not supports_packing(_tiny("Mistral", sliding_window=4))  # a window would span prompts
    no_interface = type("Legacy", (), {"_supports_attention_backend": False})()
    no_interface.config = SimpleNamespace()
    assert not supports_packing(no_interface)  # it would ignore the spans: prompts would see each other
