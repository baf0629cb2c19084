"""The decode batch's KV-cache layer: appends write into spare columns, and whatever the batch
assigns between steps (a dropped column, rows removed or joined) reads back unchanged."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer  # noqa: E402

from tailorlm.models.kv_growth import SpareColumnsLayer, with_spare_columns  # noqa: E402


def _layer(rows: int = 3, columns: int = 5) -> tuple[SpareColumnsLayer, torch.Tensor, torch.Tensor]:
    layer = SpareColumnsLayer()
    k, v = torch.randn(rows, 2, columns, 4), torch.randn(rows, 2, columns, 4)
    layer.update(k, v)  # the prefill: the plain path
    return layer, k, v


def test_appends_equal_concatenation_and_reuse_one_buffer() -> None:
    layer, k, v = _layer()
    first = None
    for _ in range(12):
        nk, nv = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
        keys, values = layer.update(nk, nv)
        k, v = torch.cat([k, nk], dim=-2), torch.cat([v, nv], dim=-2)
        assert torch.equal(keys, k) and torch.equal(values, v)
        first = first if first is not None else keys.data_ptr()
        assert keys.data_ptr() == first  # written into the spare columns, not copied
    assert layer.get_seq_length() == 17


def test_a_dropped_column_is_overwritten_in_place_and_other_tensors_are_adopted() -> None:
    layer, k, v = _layer()
    keys, _ = layer.update(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4))
    ptr = keys.data_ptr()
    layer.keys, layer.values = layer.keys[:, :, :5], layer.values[:, :, :5]  # an abandoned step's rollback
    nk, nv = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
    keys, values = layer.update(nk, nv)
    assert keys.data_ptr() == ptr and torch.equal(keys, torch.cat([k, nk], dim=-2))
    assert torch.equal(values, torch.cat([v, nv], dim=-2))
    kept = torch.tensor([0, 2])  # a row leaves: the batch assigns gathered copies
    layer.keys, layer.values = layer.keys[kept], layer.values[kept]
    expect_k, expect_v = layer.keys.clone(), layer.values.clone()
    nk, nv = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)
    keys, values = layer.update(nk, nv)
    assert torch.equal(keys, torch.cat([expect_k, nk], dim=-2))
    assert torch.equal(values, torch.cat([expect_v, nv], dim=-2))


def test_only_plain_full_attention_layers_are_converted() -> None:
    from types import SimpleNamespace

    cache = with_spare_columns(SimpleNamespace(layers=[DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=8)]))
    assert type(cache.layers[0]) is SpareColumnsLayer and type(cache.layers[1]) is DynamicSlidingWindowLayer
