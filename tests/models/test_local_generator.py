"""The packaged SmolLM2 behind TransformersGenerator: real model, small outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailorlm.models import GenerationConfig, Generator, TransformersGenerator, chat

pytestmark = pytest.mark.model

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
COLORS = [{"role": "user", "content": "Name three colors."}]
COUNT = [
    {"role": "system", "content": "You are a precise assistant."},
    {"role": "user", "content": "Count from 1 to 10, one number per line."},
]
SHORT = GenerationConfig(max_new_tokens=24)


def test_is_a_generator_with_provenance_name(smollm: TransformersGenerator) -> None:
    assert isinstance(smollm, Generator)
    assert smollm.name == "smollm2-135m-instruct"
    assert smollm.load_seconds > 0
    assert (smollm.path / "model.safetensors").is_file()


def test_greedy_answer_is_coherent(smollm: TransformersGenerator) -> None:
    answer = chat(smollm, CAPITAL, config=SHORT)
    assert "Paris" in answer  # the model says "The capital of France is Paris."


def test_greedy_is_deterministic(smollm: TransformersGenerator) -> None:
    assert smollm.generate([COLORS], config=SHORT) == smollm.generate([COLORS], config=SHORT)


def test_batch_equals_one_at_a_time(smollm: TransformersGenerator) -> None:
    # Prompts of different lengths, so the batch really is left-padded.
    batch = [CAPITAL, COLORS, COUNT]
    config = GenerationConfig(max_new_tokens=32)
    singles = [smollm.generate([conv], config=config)[0] for conv in batch]
    assert smollm.generate(batch, config=config) == singles
    assert len(set(singles)) == 3


def test_stop_strings_cut_the_output(smollm: TransformersGenerator) -> None:
    full = chat(smollm, COUNT, config=GenerationConfig(max_new_tokens=30))
    assert "5" in full
    cut = chat(smollm, COUNT, config=GenerationConfig(max_new_tokens=30, stop=("5",)))
    assert "5" not in cut
    assert cut and full.startswith(cut)


def test_max_new_tokens_bounds_the_output(smollm: TransformersGenerator) -> None:
    answer = chat(smollm, COUNT, config=GenerationConfig(max_new_tokens=5))
    assert answer
    assert len(smollm.tokenizer.encode(answer, add_special_tokens=False)) <= 5


def test_seeded_sampling_is_reproducible(smollm: TransformersGenerator) -> None:
    config = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=7)
    assert chat(smollm, COLORS, config=config) == chat(smollm, COLORS, config=config)


def test_count_tokens_counts_the_templated_prompt(smollm: TransformersGenerator) -> None:
    n = smollm.count_tokens(CAPITAL)
    assert n > len(smollm.tokenizer.encode(CAPITAL[0]["content"]))  # template adds tokens
    longer = [{"role": "user", "content": CAPITAL[0]["content"] + " Please."}]
    assert smollm.count_tokens(longer) > n


def test_invalid_inputs_raise_value_error(smollm: TransformersGenerator) -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="role"):
        smollm.generate([[{"role": "bot", "content": "hi"}]])
    with pytest.raises(ValueError, match="single conversation"):
        smollm.generate(CAPITAL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 conversations"):
        smollm.generate([CAPITAL, COLORS], adapter=["a"])
    assert smollm.generate([]) == []


def test_lora_adapter_routing(smollm: TransformersGenerator, random_lora: Path) -> None:
    config = GenerationConfig(max_new_tokens=12)
    base = smollm.generate([CAPITAL, COLORS], config=config)
    smollm.add_adapter("rand", random_lora)
    try:
        assert smollm.adapters == ["rand"]
        with pytest.raises(ValueError, match="already loaded"):
            smollm.add_adapter("rand", random_lora)
        with pytest.raises(ValueError, match="'nobody'"):
            smollm.generate([CAPITAL], adapter="nobody")

        tuned = smollm.generate([CAPITAL, COLORS], config=config, adapter="rand")
        assert tuned[0] != base[0] and tuned[1] != base[1]
        assert smollm.generate([CAPITAL, COLORS], config=config, adapter=None) == base
        # PEFT's mixed-adapter batch: each row gets its own adapter (or none).
        mixed = smollm.generate([CAPITAL, COLORS], config=config, adapter=["rand", None])
        assert mixed == [tuned[0], base[1]]
    finally:
        smollm.delete_adapter("rand")
    assert smollm.adapters == []
    assert smollm.generate([CAPITAL], config=config) == base[:1]
    with pytest.raises(ValueError, match="unknown adapter"):
        smollm.delete_adapter("rand")


@pytest.mark.model
def test_score_choices_single_and_multi_token(smollm: TransformersGenerator) -> None:
    """Constrained choice: one score per choice, batch-independent, and multi-token choices
    scored by summed log-probabilities (a clearly negative review prefers 'negative')."""
    pos = [{"role": "user", "content": "Review: Absolutely amazing, best strings ever! Is it positive or negative?"}]
    neg = [{"role": "user", "content": "Review: Terrible, it broke after one day. Is it positive or negative?"}]
    digits = smollm.score_choices([pos, neg], ["1", "2", "3", "4", "5"])
    assert digits.shape == (2, 5) and (digits < 0).all()
    alone = smollm.score_choices([neg], ["1", "2", "3", "4", "5"])
    np.testing.assert_allclose(alone[0], digits[1], atol=1e-4)  # left padding does not change scores
    words = smollm.score_choices([neg], ["positive", "negative"])
    assert words[0, 1] > words[0, 0]
    with pytest.raises(ValueError, match="choices is empty"):
        smollm.score_choices([pos], [])
    with pytest.raises(ValueError, match="unknown adapter"):
        smollm.score_choices([pos], ["1"], adapter="nobody")


def test_the_output_head_reads_default_strides_and_answers_the_same() -> None:
    """The head's pre-hook repacks a strided view (the last positions, as ``logits_to_keep``
    takes them) so matmul folds it instead of expanding the frozen weight per row; the logits
    are those of the view itself, and inputs already packed pass through untouched."""
    import torch

    from tailorlm.models._output_head import packed_input

    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    seen: list[tuple[int, ...]] = []
    head.register_forward_pre_hook(packed_input)
    head.register_forward_pre_hook(lambda m, args: seen.append(args[0].stride()))
    hidden = torch.randn(3, 7, 16)
    last = hidden[:, -1:, :]  # stride (112, 16, 1): not the default (16, 16, 1)
    with torch.inference_mode():
        out = head(last)
        packed = head(hidden)
    assert seen == [(16, 16, 1), (112, 16, 1)]
    assert torch.allclose(out, last @ head.weight.T, atol=1e-6)  # another kernel: not bitwise
    assert torch.allclose(packed, hidden @ head.weight.T, atol=1e-6)
    assert packed_input(head, (hidden,)) is None and packed_input(head, (hidden[0],)) is None
