"""Gathered LoRA on the real model (fp32): a mixed-adapter batch through two batched matmuls
per layer gives PEFT's per-adapter logits; adapters it cannot gather go through PEFT."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailorlm.models import TransformersGenerator
from tailorlm.models.base import GenerationConfig
from tailorlm.models.continuous import ContinuousBatch
from tailorlm.models.inputs import ModelInput

PROMPTS = ["Name three colours.", "Why is the sky blue?", "One sentence about guitars.", "A title for a capo review."]


def _save_lora(smollm: TransformersGenerator, folder: Path, seed: int, **config: object) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm.path, local_files_only=True)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        warnings.filterwarnings("ignore", ".*lora_bias=True.*has no bias")  # the point of gl-bias
        warnings.filterwarnings("ignore", ".*LoRA tensor.*invalid shape")  # its 1-D lora_B.bias, not a shard
        model = get_peft_model(base, LoraConfig(target_modules=["q_proj", "v_proj"], init_lora_weights=False, **config))
        model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapters(
    smollm: TransformersGenerator, random_lora: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """``gl-2`` (rank 2), ``gl-8`` (rank 8, another alpha: ranks are padded, scalings differ)
    and ``gl-bias`` (a LoRA bias, which is not gathered)."""
    root = tmp_path_factory.mktemp("gathered")
    smollm.add_adapter("gl-2", random_lora)
    smollm.add_adapter("gl-8", _save_lora(smollm, root / "r8", 3, r=8, lora_alpha=32))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*lora_bias=True.*has no bias")
        smollm.add_adapter("gl-bias", _save_lora(smollm, root / "bias", 4, r=2, lora_bias=True))
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for name in ("gl-2", "gl-8", "gl-bias"):
                smollm.delete_adapter(name)


def _logits(smollm: TransformersGenerator, names: list[str], *, gathered: bool) -> object:
    """Last-position logits of PROMPTS (left-padded) with each row's adapter."""
    import torch

    batch = ContinuousBatch(smollm)
    enc = smollm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    saved = smollm.gathered_lora
    smollm.gathered_lora = saved if gathered else None
    try:
        with smollm._lock, smollm._eval_mode(), torch.inference_mode(), batch._adapters(names) as kwargs:
            assert ("adapter_names" not in kwargs) is gathered  # the path asked for is the path taken
            out = smollm.model(**enc, logits_to_keep=1, **kwargs)
    finally:
        smollm.gathered_lora = saved
    return out.logits[:, -1]


def test_gathered_logits_equal_peft_per_adapter_loop(smollm: TransformersGenerator, adapters: None) -> None:
    import torch

    names = ["gl-2", "__base__", "gl-8", "gl-2"]
    gathered = _logits(smollm, names, gathered=True)
    looped = _logits(smollm, names, gathered=False)
    base = _logits(smollm, ["__base__"] * 4, gathered=True)
    torch.testing.assert_close(gathered, looped, rtol=1e-5, atol=1e-4)
    assert torch.equal(gathered[1], base[1])  # a row without an adapter gets exactly the base model
    for row in (0, 2, 3):
        assert (gathered[row] - base[row]).abs().max() > 1e-2  # the adapters' update was added


def test_the_layers_are_left_as_found(smollm: TransformersGenerator, adapters: None) -> None:
    import torch
    from peft.tuners.lora.layer import Linear as LoraLinear

    _logits(smollm, ["gl-8", "gl-2", "__base__", "gl-8"], gathered=True)
    layers = [m for m in smollm.model.modules() if isinstance(m, LoraLinear)]
    assert layers and not any(layer.disable_adapters for layer in layers)  # PEFT's own path works again
    gathered = smollm.gathered_lora
    assert gathered is not None
    enc = smollm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    two_rows = gathered.rows(smollm.model, ["gl-2", "gl-8"])
    with pytest.raises(ValueError, match=r"expects \(2 rows"), smollm._lock, torch.inference_mode(), two_rows:
        smollm.model(**enc, logits_to_keep=1)  # 4 inputs for 2 rows' adapters
    assert not any(layer.disable_adapters for layer in layers)  # restored after the failure too


def test_an_adapter_with_a_bias_goes_through_peft_and_answers_as_alone(
    smollm: TransformersGenerator, adapters: None
) -> None:
    gathered = smollm.gathered_lora
    assert gathered is not None
    assert gathered.supports(smollm.model, ["gl-2", "gl-8", "__base__"])
    assert not gathered.supports(smollm.model, ["gl-2", "gl-bias"])
    config = GenerationConfig(max_new_tokens=12)
    rows = [
        ModelInput([{"role": "user", "content": PROMPTS[0]}], "gl-bias"),
        ModelInput([{"role": "user", "content": PROMPTS[1]}], "gl-8"),
    ]
    alone = [smollm.generate([r.messages], config=config, adapter=r.adapter)[0] for r in rows]
    batch = ContinuousBatch(smollm)
    final: dict[int, str] = {}
    for event in batch.add_many([(i, r, config) for i, r in enumerate(rows)]):
        final.update({event.row_id: event.text} if event.finished else {})
    while len(batch):
        final.update({ev.row_id: ev.text for ev in batch.step() if ev.finished})
    assert [final[0], final[1]] == alone


def test_the_kept_stacks_follow_weight_changes_and_reloads(
    smollm: TransformersGenerator, adapters: None, tmp_path: Path
) -> None:
    """The stacks are kept between passes over the same rows; an in-place change of a weight
    or an adapter unloaded and loaded again under the same name must not be served stale."""
    import torch
    from peft.tuners.lora.layer import Linear as LoraLinear

    names = ["gl-8", "gl-2", "__base__", "gl-8"]
    before = _logits(smollm, names, gathered=True)
    assert torch.equal(_logits(smollm, names, gathered=True), before)  # the kept stacks give the same
    weight = next(m for m in smollm.model.modules() if isinstance(m, LoraLinear)).lora_B["gl-8"].weight
    with torch.no_grad():
        weight.mul_(50.0)
    try:
        changed = _logits(smollm, names, gathered=True)
        torch.testing.assert_close(changed, _logits(smollm, names, gathered=False), rtol=1e-5, atol=1e-4)
        assert (changed[0] - before[0]).abs().max() > 1e-3
    finally:
        with torch.no_grad():
            weight.div_(50.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        smollm.delete_adapter("gl-2")
    smollm.add_adapter("gl-2", _save_lora(smollm, tmp_path / "other", 7, r=4, lora_alpha=16))
    reloaded = _logits(smollm, names, gathered=True)
    torch.testing.assert_close(reloaded, _logits(smollm, names, gathered=False), rtol=1e-5, atol=1e-4)
    assert (reloaded[1] - before[1]).abs().max() > 1e-3  # the new gl-2, not the kept stacks of the old


def test_the_harness_mixed_batches_are_gathered_and_answer_as_one_at_a_time(
    smollm: TransformersGenerator, adapters: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``generate`` and ``score_choices`` over rows of several adapters (the evaluation
    harness's per-user LoRA rows) take the gathered path when every adapter is plain LoRA,
    PEFT's otherwise, and each row answers as it would alone."""
    import numpy as np

    gathered = smollm.gathered_lora
    assert gathered is not None
    passes: list[tuple[str, ...]] = []
    rows_of = gathered.rows

    def counted_rows(model: object, names: list[str], packing: object = None) -> object:
        passes.append(tuple(names))
        return rows_of(model, names, packing)

    monkeypatch.setattr(gathered, "rows", counted_rows)
    config = GenerationConfig(max_new_tokens=10)
    convs = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    names: list[str | None] = ["gl-2", None, "gl-8"]
    alone = [smollm.generate([c], config=config, adapter=n)[0] for c, n in zip(convs, names, strict=True)]
    choices = ["yes", "no", "maybe"]
    scores_alone = np.concatenate(
        [smollm.score_choices([c], choices, adapter=n) for c, n in zip(convs, names, strict=True)]
    )
    assert passes == []  # one adapter (or none) per call: PEFT's active adapter, nothing gathered
    assert smollm.generate(convs, config=config, adapter=names) == alone
    np.testing.assert_allclose(smollm.score_choices(convs, choices, adapter=names), scores_alone, atol=1e-4)
    assert passes == [("gl-2", "__base__", "gl-8")] * 2
    with_bias: list[str | None] = ["gl-bias", None, "gl-8"]
    bias_alone = smollm.generate([convs[0]], config=config, adapter="gl-bias")[0]
    assert smollm.generate(convs, config=config, adapter=with_bias) == [bias_alone, *alone[1:]]
    assert len(passes) == 2  # a LoRA bias is not gathered: PEFT's adapter_names ran that batch
