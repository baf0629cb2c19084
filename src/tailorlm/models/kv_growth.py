"""A KV-cache layer that appends in place, into spare columns, instead of concatenating.

Why: transformers' ``DynamicLayer`` appends each decode step's key and value column with
``torch.cat``, so every step copies the whole cache of every layer: for the decode batch's
nine rows of ~250 tokens that is 60 tensors of 0.9-1.7 MB a step (py-spy put 12% of the
service's scheduler thread there in fp32). :class:`SpareColumnsLayer` keeps each tensor as a
prefix view of a buffer with room for more columns; a step writes its column into the room.
Measured on the real model, nine rows on eight adapters, the two kinds of batch stepping in
turn (``benchmarks/bench_kv_append.py``): 0.93x the step time in fp32, 0.96x in bf16; with
glibc's mmap threshold fixed at 1 MiB as the service fixes it, each fp32 cache tensor (1.7
MB) becomes a fresh mapping at every concatenation, and in place is 0.75x.

The continuous batch reshapes its cache between steps (rows leave, rows join, an abandoned
step drops its column) by assigning new tensors to ``keys`` and ``values``. The layer takes
whatever it finds there: a prefix of its own buffer (a dropped column) is kept as it is, any
other tensor is copied once into a new buffer with spare columns. Values read from the cache
are the same either way; only where they live changes.
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import DynamicLayer

__all__ = ["SpareColumnsLayer", "with_spare_columns"]

MIN_SPARE = 16  # columns: a buffer grows by at least this much, or a quarter of its length


class SpareColumnsLayer(DynamicLayer):
    """A full-attention cache layer whose appends write into spare columns (module docstring)."""

    _key_buffer: Any = None
    _value_buffer: Any = None

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        self.keys, self._key_buffer = _append(self.keys, self._key_buffer, key_states)
        self.values, self._value_buffer = _append(self.values, self._value_buffer, value_states)
        return self.keys, self.values


def with_spare_columns(cache: Any) -> Any:
    """``cache`` (a ``DynamicCache``) with its plain full-attention layers appending in place;
    other layer kinds (sliding windows) are left as they are."""
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.__class__ = SpareColumnsLayer
    return cache


def _append(view: Any, buffer: Any, new: Any) -> tuple[Any, Any]:
    """``view`` with ``new``'s columns after it, as a prefix view of ``buffer`` (a new buffer
    when ``view`` is not a prefix of it or it has no room)."""
    length, n = view.shape[-2], new.shape[-2]
    if buffer is None or not _is_prefix(view, buffer) or length + n > buffer.shape[-2]:
        spare = max(n, MIN_SPARE, (length + n) // 4)
        grown = view.new_empty((*view.shape[:-2], length + n + spare, view.shape[-1]))
        grown[..., :length, :].copy_(view)
        buffer = grown
    buffer[..., length : length + n, :].copy_(new)
    return buffer[..., : length + n, :], buffer


def _is_prefix(view: Any, buffer: Any) -> bool:
    """Whether ``view`` is ``buffer[..., :k, :]`` for some k (same storage, start and strides)."""
    return (
        view.data_ptr() == buffer.data_ptr()
        and view.dtype == buffer.dtype
        and view.shape[:-2] == buffer.shape[:-2]
        and view.shape[-1] == buffer.shape[-1]
        and view.stride() == buffer.stride()
    )
