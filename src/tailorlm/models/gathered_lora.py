"""Per-row LoRA for a mixed-adapter batch in two batched matmuls per layer.

PEFT's ``adapter_names`` forward loops, in every LoRA layer, over the distinct adapters of the
batch: it picks their rows, runs ``lora_A`` and ``lora_B`` on them and scatters the result back;
it also re-registers a pre-hook on every LoRA module per call to pass the names down. With nine
rows on eight adapters that was ~40% of a decode step here (RESULTS.md, "Gathered LoRA").
Serving systems gather instead (Punica's BGMV kernel, S-LoRA): each row's A and B are stacked
into a batch and the whole update is two ``bmm`` calls, whatever the number of adapters. Each
row's product is computed on its own, so a row's numbers do not depend on its batch mates.

How it runs inside PEFT without patching it: for the duration of one forward pass the LoRA
layers are switched to their "adapters disabled" state (so each returns its base layer's
output), and a forward hook registered once per layer adds the gathered update. Only vanilla
LoRA on ``nn.Linear`` is gathered; :meth:`GatheredLoRA.supports` says no (and the caller uses
PEFT's path) when a batch names an adapter that also has a variant (DoRA, aLoRA), a LoRA bias,
a merged layer, or any other kind of module (embeddings, modules_to_save).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["GatheredLoRA"]

BASE = "__base__"  # PEFT's name for "no adapter" in ``adapter_names``
ANY = object()  # in the "held elsewhere" set: some wrapper may hold any adapter


class GatheredLoRA:
    """The gathered path for one generator's PEFT model (one instance per generator: its hooks
    stay on the model's LoRA layers, idle outside :meth:`rows`)."""

    def __init__(self) -> None:
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()
        self._plan: dict[Any, tuple[Any, Any, Any]] | None = None  # layer -> stacked A, B, scales
        self._packing: Any = None  # a packed prefill's layout (models.packed.Packing), during rows()
        # Walking ~2,000 modules and stacking 60 layers' weights cost ~17 ms a step (a step is
        # ~90 ms), so both are kept: the walk while the model and its adapters' configs are the
        # same objects, the stacks while the rows' adapters, weights and scalings are unchanged.
        self._walked: tuple[Any, tuple[tuple[str, Any], ...], list[Any], set[Any]] | None = None
        self._planned: tuple[tuple[str, ...], list[Any], dict[Any, Any], list[Any], list[Any]] | None = None

    def _layers(self, model: Any) -> tuple[list[Any], set[Any]]:
        """The model's LoRA ``Linear`` layers (hooked), and the adapters any other tuner module
        holds. PEFT makes a new config object for every adapter it loads or merges, and the
        cache holds the old ones, so a name unloaded and loaded again never looks unchanged."""
        configs = tuple(getattr(model, "peft_config", {}).items())
        walked = self._walked
        if (
            walked is not None
            and walked[0]() is model
            and len(walked[1]) == len(configs)
            and all(a == c and b is d for (a, b), (c, d) in zip(walked[1], configs, strict=True))
        ):
            return walked[2], walked[3]
        import torch.nn as nn
        from peft.tuners.lora.layer import Linear as LoraLinear
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        linear, elsewhere = [], set()
        for module in model.modules():
            if type(module) is LoraLinear and isinstance(module.base_layer, nn.Linear):
                linear.append(module)
            elif isinstance(module, BaseTunerLayer):
                for attr in module.adapter_layer_names:
                    held = getattr(module, attr, None)
                    elsewhere.update(held.keys() if hasattr(held, "keys") else ())
            elif isinstance(module, AuxiliaryTrainingWrapper):  # modules_to_save, trainable tokens
                elsewhere.add(ANY)
        for layer in linear:
            if layer not in self._hooked:
                layer.register_forward_hook(self._hook)
                self._hooked.add(layer)
        self._walked = (weakref.ref(model), configs, linear, elsewhere)
        self._planned = None
        return linear, elsewhere

    def supports(self, model: Any, names: Sequence[str]) -> bool:
        """Whether every adapter ``names`` mentions is vanilla LoRA on linear layers only."""
        wanted = set(names) - {BASE}
        linear, elsewhere = self._layers(model)
        if wanted & elsewhere or (wanted and ANY in elsewhere):
            return False
        for layer in linear:
            for name in wanted & set(layer.lora_A.keys()):
                if layer.merged or name in layer.lora_variant or layer.lora_bias.get(name, False):
                    return False
                if layer.fan_in_fan_out:
                    return False
        return True

    @contextmanager
    def rows(self, model: Any, names: Sequence[str], packing: Any = None) -> Iterator[None]:
        """One forward pass of ``model`` over rows that use adapters ``names`` (``__base__``:
        none): PEFT's own LoRA update is off and the hooks add the gathered one. With
        ``packing`` (:class:`tailorlm.models.packed.Packing`) the pass is one packed row and
        ``names`` are its prompts' adapters: each prompt's tokens get its own update."""
        linear, _ = self._layers(model)
        plan = self._stacks(linear, tuple(names))
        was = [(layer, layer._disable_adapters) for layer in linear]
        for layer in linear:
            layer._disable_adapters = True  # the base layer's output only; the hook adds the rest
        self._plan, self._packing = plan, packing
        try:
            yield
        finally:
            self._plan, self._packing = None, None
            for layer, flag in was:
                layer._disable_adapters = flag

    def _stacks(self, linear: list[Any], names: tuple[str, ...]) -> dict[Any, Any]:
        """Each layer's stacked A, B and scalings for ``names``: the last ones again when the
        rows are the same and so are the weights they were stacked from (their storage, and
        ``_version``, which counts in-place changes such as a state-dict load) and the
        scalings. Which layers exist and which adapters they hold is fixed by :meth:`_layers`."""
        planned = self._planned
        if planned is not None and planned[0] == names and planned[1] is linear and planned[4] == _state(planned[3]):
            return planned[2]
        plan = {}
        for layer in linear:
            stacked = _stack(layer, names)
            if stacked is not None:
                plan[layer] = stacked
        held = [(layer, n) for layer in plan for n in dict.fromkeys(names) if n in layer.lora_A]
        uses = [(layer.lora_A[n].weight, layer.lora_B[n].weight, layer, n) for layer, n in held]
        self._planned = (names, linear, plan, uses, _state(uses))
        return plan

    def _hook(self, layer: Any, args: tuple[Any, ...], output: Any) -> Any:
        import torch

        plan = self._plan.get(layer) if self._plan is not None else None
        if plan is None:
            return None  # outside rows(), or no row has an adapter on this layer
        a, b, scale = plan
        x, packing = args[0], self._packing
        rows = 1 if packing is not None else a.shape[0]
        if x.dim() != 3 or x.shape[0] != rows:
            raise ValueError(f"gathered LoRA expects ({rows} rows, tokens, features), got {tuple(x.shape)}")
        if packing is not None:  # each prompt's span as a row of its own (left-padded), and back
            x = packing.to_padded_rows(x)
        # PEFT's order: result + lora_B(lora_A(x)) * scaling, computed in the adapter's dtype
        delta = torch.bmm(torch.bmm(x.to(a.dtype), a.transpose(1, 2)), b.transpose(1, 2)) * scale
        if packing is not None:
            delta = packing.to_packed(delta)
        return output + delta.to(output.dtype)


def _state(uses: list[tuple[Any, Any, Any, str]]) -> list[tuple[Any, ...]]:
    """What a stacked plan depends on beyond the layers: each weight's storage and in-place
    change count, each scaling (read without going through ``nn.Module.__getattr__``)."""
    return [(a._version, b._version, a.data_ptr(), b.data_ptr(), layer.scaling[n]) for a, b, layer, n in uses]


def _stack(layer: Any, names: Sequence[str]) -> tuple[Any, Any, Any] | None:
    """Each row's A (rows, r, in), B (rows, out, r) and scaling (rows, 1, 1) on ``layer``; zeros
    for rows without an adapter here; ranks padded with zeros to the largest. None when no row
    has an adapter on this layer."""
    import torch
    import torch.nn.functional as F

    held = {n for n in names if n in layer.lora_A}
    if not held:
        return None
    rank = max(layer.lora_A[n].weight.shape[0] for n in held)
    ref = layer.lora_A[next(iter(held))].weight
    out_features = layer.lora_B[next(iter(held))].weight.shape[0]
    zero_a = ref.new_zeros(rank, ref.shape[1])
    zero_b = ref.new_zeros(out_features, rank)
    a_rows, b_rows, scales = [], [], []
    for n in names:
        if n not in held:
            a_rows.append(zero_a)
            b_rows.append(zero_b)
            scales.append(0.0)
            continue
        a, b = layer.lora_A[n].weight, layer.lora_B[n].weight
        pad = rank - a.shape[0]
        a_rows.append(F.pad(a, (0, 0, 0, pad)) if pad else a)
        b_rows.append(F.pad(b, (0, pad)) if pad else b)
        scales.append(float(layer.scaling[n]))
    scale = torch.tensor(scales, dtype=ref.dtype, device=ref.device).view(-1, 1, 1)
    return torch.stack(a_rows), torch.stack(b_rows), scale
