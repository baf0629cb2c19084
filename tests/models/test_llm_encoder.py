"""The frozen LLM as a text encoder: what the llm-text and user-stack-llm predictors train heads on."""

from __future__ import annotations

import numpy as np
import pytest

from tailorlm.tasks import get_task
from tailorlm.tasks.text_model import GlobalTextPredictor, LLMTextEncoder
from tailorlm.testing import FakeGenerator


def test_encode_is_independent_of_batching_padding_and_adapters(smollm) -> None:  # type: ignore[no-untyped-def]
    texts = ["A warm, bright guitar tone.", "The stand broke after a week and the case smells.", "ok"]
    together = smollm.encode(texts, batch_size=3)
    alone = np.stack([smollm.encode([t], batch_size=1)[0] for t in texts])
    assert together.shape == (3, smollm.base_model.config.hidden_size) and together.dtype == np.float32
    assert np.allclose(together, alone, atol=1e-4)  # right padding is masked out of the mean
    assert not np.allclose(together[0], together[1], atol=1e-2)
    cut = smollm.encode([texts[1] + " extra words that fall past the cut" * 20], max_tokens=8)
    assert np.allclose(cut[0], smollm.encode([texts[1]], max_tokens=8)[0], atol=1e-4)
    with pytest.raises(ValueError, match="max_tokens"):
        smollm.encode(texts, max_tokens=0)


def test_a_head_on_llm_vectors_learns_a_rating_and_each_text_is_encoded_once(smollm) -> None:  # type: ignore[no-untyped-def]
    task = get_task("amazon-rating")
    good = ["Wonderful strings, great sound, love them.", "Excellent stand, sturdy and perfect."]
    bad = ["Terrible cable, broke in a day, awful.", "Worst pedal ever, useless and noisy."]
    texts, labels = (good + bad) * 3, ["5", "5", "1", "1"] * 3
    calls: list[int] = []
    real = smollm.encode

    class Counting:
        def encode(self, batch, **kw):  # type: ignore[no-untyped-def]
            calls.append(len(batch))
            return real(batch, **kw)

    encoder = LLMTextEncoder(Counting())
    model = GlobalTextPredictor(encoder=encoder).fit(task, texts, labels)
    answers = [p.answer for p in model.predict(task, good + bad, [()] * 4)]
    assert answers == ["5", "5", "1", "1"]
    assert sum(calls) == 4  # the twelve training texts are four distinct ones; predicting re-encodes none


def test_a_generator_that_cannot_encode_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        LLMTextEncoder(FakeGenerator())
