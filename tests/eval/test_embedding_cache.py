"""The persistent embedding cache: a second process embeds nothing it has seen, vectors come
back bit for bit, and vectors of another model are never served."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tailorlm.eval.cache import CachedEmbedder


class CountingEmbedder:
    """Deterministic vectors from the text's bytes; records every text it was asked for."""

    def __init__(self, name: str = "counting", version: str = "1", dim: int = 8) -> None:
        self.name, self.version, self.dim = name, version, dim
        self.seen: list[str] = []

    def embed(self, texts):
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            rng = np.random.default_rng(abs(hash((self.name, t))) % 2**32)
            v = rng.normal(size=self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


def test_second_process_reads_vectors_back_and_embeds_only_new_texts(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    first = CachedEmbedder(inner, tmp_path / "emb.sqlite")
    a = first.embed(["guitar strings", "a capo", "guitar strings"])
    assert inner.seen == ["guitar strings", "a capo"]  # the repeat was embedded once
    assert np.array_equal(a[0], a[2])
    first.close()

    inner2 = CountingEmbedder()
    again = CachedEmbedder(inner2, tmp_path / "emb.sqlite")  # what a new process sees
    b = again.embed(["a capo", "guitar strings", "a tuner"])
    assert inner2.seen == ["a tuner"]
    assert (again.hits, again.misses) == (2, 1)
    assert b.dtype == np.float32 and b.shape == (3, 8)
    assert np.array_equal(b[0], a[1]) and np.array_equal(b[1], a[0])


def test_vectors_of_another_model_are_never_served(tmp_path: Path) -> None:
    CachedEmbedder(CountingEmbedder("model-a"), tmp_path / "emb.sqlite").embed(["same text"])
    other = CountingEmbedder("model-b")
    v = CachedEmbedder(other, tmp_path / "emb.sqlite").embed(["same text"])
    assert other.seen == ["same text"]
    assert np.array_equal(v[0], other.embed(["same text"])[0])
    newer = CountingEmbedder("model-a", version="2")
    CachedEmbedder(newer, tmp_path / "emb.sqlite").embed(["same text"])
    assert newer.seen == ["same text"]  # a new version of the same model is a different model
