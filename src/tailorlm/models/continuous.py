"""Continuous batching for the local model: rows join and leave a running decode batch.

What vLLM and TGI do on a GPU, on this CPU backend, each row with its own LoRA adapter (or
none): plain LoRA adapters are gathered into two batched matmuls per layer
(:mod:`tailorlm.models.gathered_lora`), others go through PEFT's per-row ``adapter_names``:

- :meth:`ContinuousBatch.add` prefills one request **alone** (no padding to other rows'
  lengths, only the last position's logits), samples its first token, and joins its KV
  cache to the batch's by left-padding the shorter side (masked out).
- :meth:`ContinuousBatch.step` decodes one token for every row at once: one forward pass
  with each row's own position ids, attention mask and adapter; each row samples with its
  own settings and random generator, and stops on its own EOS, stop string or max_tokens.
- A step can give way (``step(interrupt=...)``): at the first decoder-layer boundary where
  ``interrupt()`` is true the pass is abandoned, the layers it ran drop their new cache
  column and no row advances, so a request that arrived during the step is prefilled now
  instead of after it (a step of 9 rows takes 70-100 ms on 2 CPU cores, a third to a half
  of one prompt's prefill). PEFT's ``adapter_names`` path is never interrupted: its hooks
  are not removed when the pass raises.
- Finished or cancelled rows leave at once (:meth:`ContinuousBatch.remove`); padding columns
  no remaining row needs are cut off, so a long prompt that left does not slow the others.

Greedy rows give the tokens a one-at-a-time :meth:`TransformersGenerator.generate` gives in
fp32 (the padding is masked, positions are per row). :class:`TextStream` turns a row's
growing decoded text into safe-to-show deltas; the fake decoder in :mod:`tailorlm.testing`
shares it, so tests of the scheduler see the same stop and whitespace rules.

The batch is not thread-safe: one scheduler thread owns it. Each forward pass holds the
generator's own lock, which adapter loads and unloads take too; other users of the model
interleave between steps. A row whose adapter was unloaded between steps (an LRU eviction,
a forgotten user) is dropped with an ``error`` event instead of failing the whole batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tailorlm.models.base import BASE_ADAPTER, GenerationConfig, cut_at_stop, normalize_messages
from tailorlm.models.packed import Packing, packed_attention, split_cache, supports_packing

if TYPE_CHECKING:
    from tailorlm.models.inputs import ModelInput

__all__ = ["ContinuousBatch", "DecodeBatch", "RowEvent", "TextStream"]


@dataclass(frozen=True)
class RowEvent:
    """What one row produced in one call: new text, and whether (and why) it finished."""

    row_id: int
    delta: str
    finished: bool = False
    finish_reason: str | None = None  # "stop" (EOS or a stop string) or "length"
    text: str | None = None  # the whole answer, once finished
    completion_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None  # the row was dropped (e.g. its adapter was unloaded under it)


class DecodeBatch(Protocol):
    """A running batch a scheduler drives one call at a time (see the module docstring)."""

    def add(self, row_id: int, row: ModelInput, config: GenerationConfig) -> list[RowEvent]: ...

    def step(self, interrupt: Callable[[], bool] | None = None) -> list[RowEvent]: ...

    def remove(self, row_id: int) -> None: ...

    def __len__(self) -> int: ...


class TextStream:
    """A row's answer as it grows: the text to show so far, with what may still change held back.

    The final answer is ``cut_at_stop(text, stop).strip()``, as :meth:`generate` returns it;
    deltas concatenate to exactly that. Held back until the next token decides: trailing
    whitespace (the answer is stripped), a trailing partial UTF-8 character, and a suffix
    that could be the start of a stop string.
    """

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self.stop = tuple(stop)
        self.sent = 0

    def update(self, text: str, *, final: bool = False) -> tuple[str, bool]:
        """(delta to emit, whether a stop string ended the answer) for the decoded ``text``."""
        cut = cut_at_stop(text, self.stop)
        stopped = len(cut) < len(text) or any(s in text for s in self.stop)
        shown = cut.strip() if (stopped or final) else self._settled(cut.lstrip())
        delta = shown[self.sent :]
        self.sent = max(self.sent, len(shown))
        return delta, stopped

    def _settled(self, text: str) -> str:
        text = text.rstrip().rstrip("\ufffd")
        hold = 0
        for s in self.stop:  # the longest suffix of text that is a proper prefix of a stop string
            for n in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:n]):
                    hold = n
                    break
        return text[: len(text) - hold].rstrip()


class _StepInterrupted(Exception):
    """Raised between decoder layers when a step gives way to a waiting prefill."""


_LAYERS: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def _decoder_layers(model: Any) -> list[Any]:
    """The decoder blocks of a transformers model: the ``ModuleList`` with
    ``config.num_hidden_layers`` entries (else the longest), found once per model."""
    import torch

    layers = _LAYERS.get(model)
    if layers is None:
        lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
        n = getattr(model.config, "num_hidden_layers", None)
        found = next((m for m in lists if len(m) == n), max(lists, key=len, default=None))
        layers = _LAYERS[model] = list(found) if found is not None else []
    return layers


@dataclass
class _Row:
    row_id: int
    adapter: str
    config: GenerationConfig
    prompt_tokens: int
    length: int  # tokens of this row in the cache (= position id of next_token)
    next_token: int = -1
    tokens: list[int] = field(default_factory=list)
    stream: TextStream = field(default_factory=TextStream)
    rng: Any = None
    warpers: Any = None


class ContinuousBatch:
    """The continuous decode batch over a :class:`TransformersGenerator` (module docstring)."""

    def __init__(self, generator: Any) -> None:  # a TransformersGenerator (importing it here would be a cycle)
        self.gen = generator
        self.rows: list[_Row] = []
        self.cache: Any = None
        self.mask: Any = None  # (rows, cache columns): 0 = left padding, 1 = a real token
        self.interrupted = False  # the last step gave way before finishing (see step)
        eos = generator.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos.add(generator.tokenizer.eos_token_id)

    def __len__(self) -> int:
        return len(self.rows)

    # -- joining ----------------------------------------------------------------------------

    def add(self, row_id: int, row: ModelInput, config: GenerationConfig) -> list[RowEvent]:
        """Prefill ``row`` alone, sample its first token and join it to the batch."""
        import torch
        from transformers import DynamicCache

        gen = self.gen
        if row.adapter is not None and row.adapter not in gen.adapters:
            raise ValueError(f"unknown adapter {row.adapter!r}; loaded: {gen.adapters}")
        ids = gen.tokenizer.apply_chat_template(
            normalize_messages(row.messages), add_generation_prompt=True, return_dict=True
        )["input_ids"]
        soft = gen._resolve_soft([row.soft_prompt], 1)[0]
        cache = DynamicCache(config=gen.base_model.config)
        names = [row.adapter or BASE_ADAPTER]
        with gen._lock, gen._eval_mode(), torch.inference_mode(), self._adapters(names) as adapter_kwargs:
            if soft is None:
                inputs: dict[str, Any] = {"input_ids": torch.tensor([ids], device=gen.device)}
            else:
                tok = gen.model.get_input_embeddings()(torch.tensor(ids, device=gen.device))
                inputs = {"inputs_embeds": torch.cat([soft, tok], dim=0)[None]}
            length = len(ids) + (0 if soft is None else soft.shape[0])
            out = gen.model(
                **inputs,
                attention_mask=torch.ones(1, length, dtype=torch.long, device=gen.device),
                position_ids=torch.arange(length, device=gen.device)[None],
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                **adapter_kwargs,
            )
        state = self._state(row_id, row, config, length)
        self._join(out.past_key_values, torch.ones(1, length, dtype=torch.long, device=gen.device), [state])
        return [self._advance(state, out.logits[0, -1])]

    def groupable(self, row: ModelInput) -> bool:
        """Whether ``row`` can be prefilled with others (:meth:`add_many`): a loaded adapter
        (or none) and no soft prompt (those are prefilled alone, by :meth:`add`)."""
        return row.soft_prompt is None and (row.adapter is None or row.adapter in self.gen.adapters)

    def add_many(self, items: Sequence[tuple[int, ModelInput, GenerationConfig]]) -> list[RowEvent]:
        """Prefill several rows in one forward pass, each with its own adapter, then join them.

        Packed (:mod:`tailorlm.models.packed`: the prompts end to end, attention within each)
        when the model and the rows' adapters allow it; else left-padded to the longest
        (padding masked, each row's positions from 0). Prefill is compute-bound, so what a
        pass saves is the larger matrix products' better use of the CPU: nine prompts of
        93-191 tokens on eight adapters took 1,617 ms one after another in bf16 here, 1,116 ms
        padded, 928 ms packed; in fp32 packed saved 10-22% (``benchmarks/bench_prefill.py``).
        Rows must be :meth:`groupable`.
        """
        import torch

        if len(items) == 1:
            return self.add(*items[0])
        gen = self.gen
        for _, row, _ in items:
            if not self.groupable(row):
                raise ValueError(f"row with adapter {row.adapter!r} or a soft prompt cannot be prefilled in a group")
        ids = [
            gen.tokenizer.apply_chat_template(
                normalize_messages(r.messages), add_generation_prompt=True, return_dict=True
            )["input_ids"]
            for _, r, _ in items
        ]
        names = [r.adapter or BASE_ADAPTER for _, r, _ in items]
        with gen._lock, gen._eval_mode(), torch.inference_mode():
            if self._packable(names):
                cache, mask, logits = self._prefill_packed(ids, names)
            else:
                cache, mask, logits = self._prefill_padded(ids, names)
        states = [self._state(rid, row, cfg, len(i)) for (rid, row, cfg), i in zip(items, ids, strict=True)]
        self._join(cache, mask, states)
        return [self._advance(s, logits[k]) for k, s in enumerate(states)]

    def packs(self, rows: Sequence[ModelInput]) -> bool:
        """Whether :meth:`add_many` prefills ``rows`` packed, end to end (so no padding: a
        scheduler need not group them by length)."""
        return self._packable([r.adapter or BASE_ADAPTER for r in rows])

    def _packable(self, names: list[str]) -> bool:
        gen = self.gen
        if not supports_packing(gen.base_model):
            return False
        return not gen._peft_wrapped or (gen.gathered_lora is not None and gen.gathered_lora.supports(gen.model, names))

    def _prefill_packed(self, ids: list[list[int]], names: list[str]) -> tuple[Any, Any, Any]:
        """(cache as left-padded rows, their mask, each row's last logits) of one packed pass."""
        from transformers import DynamicCache

        gen = self.gen
        packing = Packing(ids)
        config = gen.base_model.config
        # _packable checked that every adapter is gathered: the hooks give each span its own
        adapters = gen.gathered_lora.rows(gen.model, names, packing) if gen._peft_wrapped else nullcontext()
        with adapters, packed_attention(config):
            out = gen.model(
                **packing.inputs(ids, gen.device), past_key_values=DynamicCache(config=config), use_cache=True
            )
        split_cache(out.past_key_values, packing)
        return out.past_key_values, packing.mask(gen.device), out.logits[0]

    def _prefill_padded(self, ids: list[list[int]], names: list[str]) -> tuple[Any, Any, Any]:
        """The same, left-padded to the longest prompt (PEFT's per-row adapters, or a model
        whose attention cannot be packed)."""
        import torch
        from transformers import DynamicCache

        gen = self.gen
        width = max(map(len, ids))
        pad = gen.tokenizer.pad_token_id if gen.tokenizer.pad_token_id is not None else 0
        dev = gen.device
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=dev)
        with self._adapters(names) as adapter_kwargs:
            out = gen.model(
                input_ids=torch.tensor([[pad] * (width - len(i)) + list(i) for i in ids], device=dev),
                attention_mask=mask,
                position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
                past_key_values=DynamicCache(config=gen.base_model.config),
                use_cache=True,
                logits_to_keep=1,
                **adapter_kwargs,
            )
        return out.past_key_values, mask, out.logits[:, -1]

    def _state(self, row_id: int, row: ModelInput, config: GenerationConfig, length: int) -> _Row:
        state = _Row(row_id, row.adapter or BASE_ADAPTER, config, length, length, stream=TextStream(config.stop))
        state.rng, state.warpers = _sampler(config, self.gen.device)
        return state

    def _join(self, cache: Any, mask: Any, states: list[_Row]) -> None:
        """Append the prefilled rows of ``cache`` (their ``mask``: 0 = left padding) to the batch."""
        import torch
        import torch.nn.functional as F

        from tailorlm.models.kv_growth import SpareColumnsLayer, with_spare_columns

        layers = with_spare_columns(cache).layers  # decode steps append in place (models/kv_growth.py)
        if any(type(layer) is not SpareColumnsLayer for layer in layers):
            raise NotImplementedError("continuous batching needs full-attention layers (no sliding window)")
        if self.cache is None:
            self.cache, self.mask, self.rows = cache, mask, list(states)
            return
        width, new = self.mask.shape[1], mask.shape[1]
        total = max(width, new)
        for mine, theirs in zip(self.cache.layers, layers, strict=True):
            mine.keys = torch.cat(
                [F.pad(mine.keys, (0, 0, total - width, 0)), F.pad(theirs.keys, (0, 0, total - new, 0))]
            )
            mine.values = torch.cat(
                [F.pad(mine.values, (0, 0, total - width, 0)), F.pad(theirs.values, (0, 0, total - new, 0))]
            )
        self.mask = torch.cat([F.pad(self.mask, (total - width, 0)), F.pad(mask, (total - new, 0))])
        self.rows.extend(states)

    # -- decoding ---------------------------------------------------------------------------

    def step(self, interrupt: Callable[[], bool] | None = None) -> list[RowEvent]:
        """One new token for every row; finished rows leave the batch.

        With ``interrupt``, checked before each decoder layer: once it is true the step is
        abandoned (``self.interrupted``), the cache is as before it and no row advances; only
        rows dropped for an unloaded adapter are reported. Running the step again later gives
        the same tokens."""
        import torch

        self.interrupted = False
        if not self.rows:
            return []
        gen = self.gen
        dropped = []
        for r in [r for r in self.rows if r.adapter != BASE_ADAPTER and r.adapter not in gen.adapters]:
            self.remove(r.row_id)  # unloaded while the row ran (an LRU eviction, a forgotten user)
            msg = f"adapter {r.adapter!r} was unloaded while this answer was being generated; retry"
            dropped.append(RowEvent(r.row_id, "", True, "error", None, len(r.tokens), r.prompt_tokens, msg))
        if not self.rows:
            return dropped
        dev = gen.device
        mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=torch.long, device=dev)], dim=1)
        names = [r.adapter for r in self.rows]
        with gen._lock, gen._eval_mode(), torch.inference_mode(), self._adapters(names) as adapter_kwargs:
            stop = None if "adapter_names" in adapter_kwargs else interrupt
            try:
                with self._interruptible(stop):
                    out = gen.model(
                        input_ids=torch.tensor([[r.next_token] for r in self.rows], device=dev),
                        attention_mask=mask,
                        position_ids=torch.tensor([[r.length] for r in self.rows], device=dev),
                        past_key_values=self.cache,
                        use_cache=True,
                        logits_to_keep=1,
                        **adapter_kwargs,
                    )
            except _StepInterrupted:
                self._drop_columns_beyond(self.mask.shape[1])
                self.interrupted = True
                return dropped
        self.cache, self.mask = out.past_key_values, mask
        rows = list(self.rows)
        for r in rows:  # every row's length first: a row leaving below trims by the others' lengths
            r.length += 1
        return dropped + [self._advance(r, out.logits[i, -1]) for i, r in enumerate(rows)]

    @contextmanager
    def _interruptible(self, interrupt: Callable[[], bool] | None) -> Iterator[None]:
        """Check ``interrupt`` before each decoder layer of the pass run inside (none: no checks)."""
        if interrupt is None:
            yield
            return

        def check(module: Any, args: Any) -> None:
            if interrupt():
                raise _StepInterrupted

        handles = [layer.register_forward_pre_hook(check) for layer in _decoder_layers(self.gen.base_model)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _drop_columns_beyond(self, width: int) -> None:
        """Undo an abandoned step: the layers it ran had appended one column to the cache."""
        for layer in self.cache.layers:
            if layer.keys is not None and layer.keys.shape[-2] > width:
                layer.keys = layer.keys[:, :, :width]
                layer.values = layer.values[:, :, :width]

    def _advance(self, r: _Row, logits: Any) -> RowEvent:
        """Sample ``r``'s next token from ``logits``, update its text; remove it when done."""
        import torch

        with torch.inference_mode():
            scores = logits.float()[None]
            if r.warpers is None:
                token = int(scores.argmax(dim=-1))
            else:
                for warp in r.warpers:
                    scores = warp(None, scores)
                token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=r.rng))
        eos = token in self.eos
        if not eos:
            r.tokens.append(token)
        r.next_token = token
        length = len(r.tokens) >= r.config.max_new_tokens
        text = self.gen.tokenizer.decode(r.tokens, skip_special_tokens=True)
        delta, stopped = r.stream.update(text, final=eos or length)
        if not (eos or stopped or length):
            return RowEvent(r.row_id, delta, prompt_tokens=r.prompt_tokens)
        self.remove(r.row_id)
        reason = "length" if length and not (eos or stopped) else "stop"
        final = cut_at_stop(text, r.config.stop).strip()
        return RowEvent(r.row_id, delta, True, reason, final, len(r.tokens), r.prompt_tokens)

    def remove(self, row_id: int) -> None:
        """Drop a row (finished or cancelled) and the padding columns nobody needs any more."""
        import torch

        keep = [i for i, r in enumerate(self.rows) if r.row_id != row_id]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        self.rows = [self.rows[i] for i in keep]
        index = torch.tensor(keep, device=self.gen.device)
        self.mask = self.mask[index]
        lead = self.mask.shape[1] - max(r.length for r in self.rows)
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, lead:]
            layer.values = layer.values[index, :, lead:]
        self.mask = self.mask[:, lead:]

    def _adapters(self, names: list[str]) -> Any:
        """Each row's adapter for one forward pass (``TransformersGenerator._per_row_adapters``)."""
        return self.gen._per_row_adapters(names)


def _sampler(config: GenerationConfig, device: str) -> tuple[Any, Any]:
    """(random generator, logits warpers) for a sampling row; (None, None) when greedy.

    Each row has its own generator, so a seeded request gives the same answer whatever
    else is in the batch. Like :meth:`TransformersGenerator.generate`: no top-k cut.
    """
    if config.greedy:
        return None, None
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    rng = torch.Generator(device=device)
    if config.seed is not None:
        rng.manual_seed(config.seed)
    else:
        rng.seed()
    warpers = [TemperatureLogitsWarper(config.temperature)]
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    return rng, warpers
