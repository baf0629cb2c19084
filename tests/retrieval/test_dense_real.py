"""Dense and hybrid retrieval, dense RAG and persona clustering on the real packaged MiniLM embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tailorlm.data import Document, Store
from tailorlm.models import SentenceTransformerEmbedder
from tailorlm.personalize import PersonaConfig, PersonaPersonalizer, Query, RagConfig, RagPersonalizer
from tailorlm.retrieval import BM25Ranker, DenseRanker, HistoryEntry, HybridRanker

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(batch_size=16)


def _entries(*texts: str) -> list[HistoryEntry]:
    return [HistoryEntry(f"doc:{i}", "u", t, "review") for i, t in enumerate(texts)]


SEMANTIC = "inexpensive instrument lead, works fine"  # no word in common with the query
LEXICAL = "the cable company raised my internet bill again"  # shares "cable", means something else
OFF_TOPIC = ("piano lessons schedule for the autumn term", "drum throne with a comfortable seat")
QUERY = "cheap guitar cable"


def test_semantic_match_beats_lexical_mismatch(minilm: SentenceTransformerEmbedder) -> None:
    entries = _entries(OFF_TOPIC[0], SEMANTIC, OFF_TOPIC[1])
    assert BM25Ranker().rank(entries, query=QUERY, k=3) == []  # no shared term: BM25 finds nothing
    hits = DenseRanker(minilm).rank(entries, query=QUERY, k=3)
    by_text = {h.entry.text: h.score for h in hits}
    assert hits[0].entry.text == SEMANTIC
    assert by_text[SEMANTIC] > by_text[OFF_TOPIC[0]] + 0.2
    assert all(-1.0 <= h.score <= 1.0 for h in hits)


def test_hybrid_returns_what_either_ranker_found(minilm: SentenceTransformerEmbedder) -> None:
    entries = _entries(OFF_TOPIC[0], SEMANTIC, LEXICAL, OFF_TOPIC[1])
    bm25 = BM25Ranker().rank(entries, query=QUERY, k=1)
    dense = DenseRanker(minilm).rank(entries, query=QUERY, k=1)
    assert [h.entry.text for h in bm25] == [LEXICAL] and [h.entry.text for h in dense] == [SEMANTIC]
    # BM25 matches one entry only, so its top entry and dense's top entry are the top two of the fusion.
    fused = HybridRanker([BM25Ranker(), DenseRanker(minilm)]).rank(entries, query=QUERY, k=2)
    assert {h.entry.text for h in fused} == {LEXICAL, SEMANTIC}
    assert fused[0].entry.text == LEXICAL  # found by both rankers: 1/61 + 1/62
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62) and fused[1].score == pytest.approx(1 / 61)
    everything = HybridRanker([BM25Ranker(), DenseRanker(minilm)]).rank(entries, query=QUERY, k=10)
    assert len(everything) == 4  # dense scores every entry, so nothing is lost in the fusion


def _review(uid: str, key: str, text: str, ts: int, title: str | None = None) -> Document:
    return Document(user_id=uid, doc_id=f"{uid}-{key}", doc_kind="review", text=text, title=title, timestamp=ts)


@pytest.fixture
def rag_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'rag.db'}")
    s.add(
        [
            _review("alice", "lead", SEMANTIC, 10, "Good value lead"),
            _review("alice", "bill", LEXICAL, 11, "Annoying bill"),
            _review("alice", "piano", OFF_TOPIC[0], 12, "Lessons"),
            _review("alice", "throne", OFF_TOPIC[1], 13, "Comfy throne"),
            _review("alice", "target", "cheap guitar cable that crackles", 20, "Crackly cable"),  # the answer
            _review("alice", "future", "cheap guitar cable bought next year", 500, "Future cable"),
            _review("bob", "cable", "cheap guitar cable, cheap guitar cable", 5, "BOBTITLE"),
        ]
    )
    yield s
    s.close()


@pytest.mark.parametrize(
    ("retriever", "k", "expected"),
    [("dense", 1, {"doc:alice-lead"}), ("hybrid", 2, {"doc:alice-lead", "doc:alice-bill"})],
    ids=["dense", "hybrid"],
)
def test_rag_end_to_end(
    rag_store: Store, minilm: SentenceTransformerEmbedder, retriever: str, k: int, expected: set[str]
) -> None:
    rag = RagPersonalizer(RagConfig(retriever=retriever, k=k), embedder=minilm).fit(rag_store)
    query = Query(QUERY, task="amazon-title", timestamp=100, exclude_doc_ids=("alice-target",))
    out = rag.personalize("alice", query)
    assert out.record.scope == "user" and out.record.methods == [f"rag-{retriever}"]
    assert {r["id"] for r in out.record.retrieved} == expected
    system = out.messages[0]["content"]
    assert "Good value lead" in system  # the user's own title is the label of the retrieved review
    assert "BOBTITLE" not in system and "Crackly" not in system and "Future" not in system
    assert QUERY in out.messages[1]["content"]
    # Only the eligible entries were embedded, and under their owner; nothing for bob.
    ids, mat, _ = rag_store.get_embeddings(user_id="alice", model=minilm.name)
    assert ids == ["doc:alice-bill", "doc:alice-lead", "doc:alice-piano", "doc:alice-throne"]
    assert mat.shape == (4, 384)
    assert rag_store.get_embeddings(user_id="bob", model=minilm.name)[0] == []
    assert rag.personalize("alice", query).messages == out.messages  # deterministic, now from the cache


DRUMS = [
    "These drum sticks survived a month of heavy rock practice",
    "The snare drum head sounds crisp and punchy",
    "Great cymbal stand for my drum kit",
    "The bass drum pedal is smooth and fast",
    "Tom-tom mounts hold my drums steady at gigs",
    "Practice pad for drummers, quiet and bouncy",
]
VIOLINS = [
    "The violin bow needed fresh rosin but plays beautifully",
    "Nice violin strings with a warm tone",
    "This violin shoulder rest is comfortable",
    "The fiddle case protects my violin well",
    "A fine tuner set for violin, easy to install",
    "Violin chin rest fits well and feels sturdy",
]


@pytest.fixture
def persona_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'persona.db'}")
    docs = []
    for n in range(3):
        for j in range(2):
            docs.append(_review(f"drummer{n}", str(j), DRUMS[2 * n + j], 10 + j))
            docs.append(_review(f"violinist{n}", str(j), VIOLINS[2 * n + j], 10 + j))
    docs += [
        _review("newbie", "0", "Drum sticks for a beginner drummer, they feel great", 10),
        _review("newbie", "1", "My first snare drum and a cheap cymbal", 11),
    ]
    s.add(docs)
    yield s
    s.close()


def test_cluster_personas_separate_drummers_from_violinists(
    persona_store: Store, minilm: SentenceTransformerEmbedder
) -> None:
    drummers = [f"drummer{n}" for n in range(3)]
    violinists = [f"violinist{n}" for n in range(3)]
    method = PersonaPersonalizer(PersonaConfig(persona_by="cluster", n_clusters=2, k=3), embedder=minilm)
    method.fit(persona_store, [*drummers, *violinists])  # "newbie" is outside the population
    assigned = method.granularity_.persona_of_
    assert set(assigned) == {*drummers, *violinists}
    drum_persona = {assigned[u] for u in drummers}
    violin_persona = {assigned[u] for u in violinists}
    assert len(drum_persona) == 1 and len(violin_persona) == 1 and drum_persona != violin_persona

    out = method.personalize("newbie", Query("which drum sticks last longest?", task="amazon-title"))
    assert out.record.scope == "persona" and {out.record.persona_id} == drum_persona
    examples = [r["id"] for r in out.record.retrieved if r["block"] == "persona-examples"]
    assert examples and all(i.startswith("doc:drummer") for i in examples)
    assert "violin" not in out.messages[0]["content"].lower()
