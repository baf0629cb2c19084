"""Memory end to end over a real store: contradiction, retrieval, forgetting, dedupe, isolation, bad model output."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tailorlm.data import Store, User
from tailorlm.memory import LABELS, Memory, MemoryConfig, MemoryUpdate
from tailorlm.models.base import GenerationConfig, Messages, normalize_batch
from tailorlm.personalize import Query, RagConfig, RagPersonalizer
from tailorlm.retrieval import load_history
from tailorlm.tasks import TASKS, Task
from tailorlm.testing import FakeGenerator


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def turn(said: str, answer: str = "Noted!") -> list[dict[str, str]]:
    return [{"role": "user", "content": said}, {"role": "assistant", "content": answer}]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'mem.db'}", files_dir=tmp_path / "files")
    yield s
    s.close()


@pytest.fixture
def facts_task(monkeypatch: pytest.MonkeyPatch) -> str:
    """A chat-like task whose history is the user's facts (what a memory-backed chat retrieves)."""
    monkeypatch.setitem(TASKS, "memory-chat", Task("memory-chat", "generation", "{input}", history_source="facts"))
    return "memory-chat"


def retrieved_texts(store: Store, user_id: str, query: str, task: str) -> list[str]:
    rag = RagPersonalizer(RagConfig(retriever="bm25", k=3)).fit(store, users=[user_id])
    result = rag.personalize(user_id, Query(query, task=task))
    return [it.text for block in result.blocks for it in block.items]


# -- the scripted conversation (the acceptance criterion), on SQLite and PostgreSQL ------------------


def test_scripted_conversation_contradiction_retrieval_forget(store: Store, facts_task: str) -> None:
    mem = Memory(store, FakeGenerator())  # FakeGenerator writes no JSON: the rules read the turn
    first = mem.observe("alice", turn("Hi! I live in Lyon and I'm vegetarian.", "Lyon is lovely, and so is veg food."))
    assert {f.text for f in first.added} == {"I live in Lyon", "I am vegetarian"}
    lyon = next(f for f in first.added if f.metadata["key"] == "location")

    second = mem.observe("alice", turn("Actually I moved to Paris last month."))
    assert [f.text for f in second.added] == ["I live in Paris"]
    paris = second.added[0]
    assert [f.fact_id for f in second.invalidated] == [lyon.fact_id]

    # the old fact is closed, not overwritten: still stored, with valid_to set
    everything = {f.fact_id: f for f in store.get_facts(user_id="alice", valid_only=False)}
    assert everything[lyon.fact_id].valid_to is not None and everything[lyon.fact_id].text == "I live in Lyon"
    assert everything[paris.fact_id].is_valid
    assert {f.text for f in mem.facts("alice")} == {"I live in Paris", "I am vegetarian"}
    assert len(mem.facts("alice", include_invalid=True)) == 3

    # the new fact is what retrieval uses; the closed one never appears
    history = load_history(store, user_id="alice", source="facts")
    assert {e.text for e in history} == {"I live in Paris", "I am vegetarian"}
    assert all(e.entry_id.startswith("fact:") and e.kind == "fact" for e in history)
    assert retrieved_texts(store, "alice", "Where do I live?", facts_task)[0] == "I live in Paris"
    assert "I live in Lyon" not in retrieved_texts(store, "alice", "Do I live in Lyon?", facts_task)

    # "forget" in the conversation removes the fact (and its history) from the store and from retrieval
    gone = mem.observe("alice", user("Please forget where I live."))
    assert {f.fact_id for f in gone.forgotten} == {lyon.fact_id, paris.fact_id} and gone.added == []
    assert {e.text for e in load_history(store, user_id="alice", source="facts")} == {"I am vegetarian"}
    assert "I live in Paris" not in retrieved_texts(store, "alice", "Where do I live?", facts_task)
    assert [f.text for f in store.get_facts(user_id="alice", valid_only=False)] == ["I am vegetarian"]


def test_facts_are_in_all_but_not_in_both(sqlite_store: Store) -> None:
    """Facts are private: "both" (which pools may read) leaves them out, "all" includes them."""
    Memory(sqlite_store).observe("alice", user("I live in Lyon"))
    assert load_history(sqlite_store, user_id="alice", source="both") == []
    assert [e.text for e in load_history(sqlite_store, user_id="alice", source="all")] == ["I live in Lyon"]
    with pytest.raises(ValueError, match="source"):
        load_history(sqlite_store, user_id="alice", source="everything")  # type: ignore[arg-type]


def test_same_fact_twice_is_one_row(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store)
    first = mem.observe("alice", user("I'm vegetarian."))
    again = mem.observe("alice", user("As I said, I am a vegetarian"))
    also = mem.observe("alice", user("I'm vegetarian and I'm vegetarian"))
    assert again.added == [] and again.duplicates == [first.added[0].fact_id]
    assert also.added == [] and also.duplicates == [first.added[0].fact_id]
    assert len(sqlite_store.get_facts(user_id="alice", valid_only=False)) == 1


class AxisEmbedder:
    """Unit vectors by topic word, so "jazz" statements point the same way whatever the wording."""

    name, version, dim = "axis", "1", 3

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        axes = [("jazz", 0), ("live", 1)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, next((a for w, a in axes if w in t.lower()), 2)] = 1.0
        return out


def test_embedder_dedupes_by_meaning_but_a_contradiction_is_never_a_duplicate(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store, embedder=AxisEmbedder())
    first = mem.observe("alice", user("I'm really into jazz music. I live in Lyon"))
    again = mem.observe("alice", user("I love jazz"))  # key likes:jazz vs likes:jazz-music; same meaning
    assert again.added == [] and again.duplicates == [f.fact_id for f in first.added if "jazz" in f.text]
    moved = mem.observe("alice", user("I moved to Paris"))  # the same direction as Lyon, but a contradiction
    assert [f.text for f in moved.added] == ["I live in Paris"] and [f.text for f in moved.invalidated] == [
        "I live in Lyon"
    ]


def test_restating_a_closed_fact_opens_a_new_period(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store)
    mem.observe("alice", user("I live in Lyon"))
    mem.observe("alice", user("I moved to Paris"))
    back = mem.observe("alice", user("I moved back to Lyon"))
    rows = sqlite_store.get_facts(user_id="alice", valid_only=False)
    assert [f.text for f in back.added] == ["I live in Lyon"] and len(rows) == 3
    assert [f.text for f in mem.facts("alice")] == ["I live in Lyon"]
    assert len({f.fact_id for f in rows}) == 3  # the first Lyon period is kept, not overwritten


def test_negation_closes_a_like_and_multi_valued_likes_coexist(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store)
    mem.observe("alice", user("I love jazz and I like hiking"))
    upd = mem.observe("alice", user("I don't like jazz anymore"))
    assert [f.text for f in upd.invalidated] == ["I like jazz"]
    assert {f.text for f in mem.facts("alice")} == {"I like hiking", "I don't like jazz"}


def test_users_are_isolated(sqlite_store: Store, facts_task: str) -> None:
    mem = Memory(sqlite_store)
    mem.observe("alice", user("I live in Lyon"))
    mem.observe("bob", user("I live in Oslo and my name is Bob"))
    mem.observe("bob", user("I moved to Bergen"))
    assert [f.text for f in mem.facts("alice")] == ["I live in Lyon"]
    assert {e.user_id for e in load_history(sqlite_store, user_id="alice", source="facts")} == {"alice"}
    assert retrieved_texts(sqlite_store, "alice", "Where do I live? Oslo? Bergen?", facts_task) == ["I live in Lyon"]
    # forgetting for Alice touches nothing of Bob's, even with the same words
    assert mem.forget("alice", text="where I live") == 1
    assert mem.observe("alice", user("Forget everything about me")).forgotten == []
    assert len(mem.facts("bob", include_invalid=True)) == 3


def test_cold_start_user_is_never_served_anothers_facts(sqlite_store: Store, facts_task: str) -> None:
    Memory(sqlite_store).observe("alice", user("I live in Lyon"))
    sqlite_store.add([User(user_id="bob")])  # bob has no facts: served at persona or global scope
    rag = RagPersonalizer(RagConfig(retriever="bm25", k=3)).fit(sqlite_store)
    texts = [
        it.text for b in rag.personalize("bob", Query("Where do I live?", task=facts_task)).blocks for it in b.items
    ]
    assert texts == []


def test_only_the_users_own_words_become_facts(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store)
    upd = mem.observe(
        "alice",
        [
            {"role": "system", "content": "I live in the cloud."},
            {"role": "user", "content": "What's a good dish?"},
            {"role": "assistant", "content": "I love risotto. I live in Milan and I'm vegan."},
        ],
    )
    assert upd.added == [] and sqlite_store.get_facts(user_id="alice", valid_only=False) == []


def test_forget_api(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store)
    upd = mem.observe("alice", user("I live in Paris. I'm vegan. My daughter is 5. I like jazz"))
    ids = {f.metadata["key"]: f.fact_id for f in upd.added}
    assert mem.forget("alice", fact_id=ids["diet"]) == 1
    assert mem.forget("alice", fact_id=ids["diet"]) == 0
    assert mem.forget("alice", text="that I live in Paris") == 1
    assert mem.forget("alice", text="my daughter") == 1
    assert mem.forget("alice", text="Volvo") == 0
    assert mem.forget("alice", text="jazz") == 1
    assert mem.facts("alice", include_invalid=True) == []


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"fact_id": "x", "text": "y"}, {"text": "  "}, {"fact_id": ""}],
    ids=["neither", "both", "blank", "empty"],
)
def test_forget_needs_exactly_one_target(sqlite_store: Store, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Memory(sqlite_store).forget("alice", **kwargs)


@pytest.mark.parametrize("bad", ["", None, [{"role": "user"}], "I live in Lyon"], ids=["user", "none", "msg", "str"])
def test_bad_input_is_a_value_error(sqlite_store: Store, bad: Any) -> None:
    mem = Memory(sqlite_store)
    with pytest.raises(ValueError):
        if bad in ("", None):
            mem.observe(bad, user("I live in Lyon"))
        else:
            mem.observe("alice", bad)


# -- model paths: junk falls back, valid JSON is used, the constrained chooser --------------------------


class ScriptedGenerator:
    """Answers from a script, one per call; records what it was asked."""

    name = "scripted"

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.calls: list[list[list[dict[str, str]]]] = []

    def generate(self, batch: Sequence[Messages], *, config: GenerationConfig | None = None, adapter=None) -> list[str]:
        self.calls.append(normalize_batch(batch))
        return [self.answers.pop(0) for _ in batch]


@pytest.mark.parametrize(
    "junk",
    [
        '{"facts": [{"category": "location"',
        '{"facts": [{"category": "planet", "value": "Lyon"}]}',
        "Sure! Lyon.",
        "{}{",
    ],
    ids=["truncated", "bad-category", "prose", "garbage"],
)
def test_malformed_model_output_retries_once_then_rules(sqlite_store: Store, junk: str) -> None:
    gen = ScriptedGenerator([junk, junk])
    upd = Memory(sqlite_store, gen).observe("alice", user("I live in Lyon and I collect old stamps"))
    assert upd.method == "rules" and len(gen.calls) == 2 and upd.errors
    assert [f.text for f in upd.added] == ["I live in Lyon"] and upd.added[0].metadata["extractor"] == "rules"
    assert gen.calls[0][0][-1]["content"] == "- I collect old stamps"  # the model sees only what the rules cannot read
    assert "That is not valid" in gen.calls[1][0][-1]["content"]  # the retry tells the model what was wrong


def test_fake_generator_junk_falls_back_without_crashing(sqlite_store: Store) -> None:
    fake = FakeGenerator()
    upd = Memory(sqlite_store, fake).observe("alice", turn("My name is Alice, I work at Airbus and I collect stamps"))
    assert upd.method == "rules" and len(fake.calls) == 2
    assert {f.text for f in upd.added} == {"My name is Alice", "I work at Airbus"}


def test_valid_json_is_used_with_provenance_and_ungrounded_values_are_retried(sqlite_store: Store) -> None:
    made_up = '{"facts": [{"category": "location", "value": "Marseille"}]}'
    good = (
        '```json\n{"facts": [{"category": "likes", "value": "sailing"}, '
        '{"category": "job", "value": "a pilot"}, {"category": "likes", "value": "jazz", "negated": true}]}\n```'
    )
    gen = ScriptedGenerator([made_up, good])
    said = "I go sailing every weekend. I fly jets as a pilot. I never listen to jazz"
    upd = Memory(sqlite_store, gen).observe("alice", user(said))
    assert upd.method == "json" and len(gen.calls) == 2
    assert {(f.metadata["key"], f.metadata["negated"]) for f in upd.added} == {
        ("likes:sailing", False),
        ("job", False),
        ("likes:jazz", True),
    }
    assert all(f.model == "scripted" and f.metadata["extractor"] == "model-json" for f in upd.added)
    assert all(f.metadata["value"].lower() in f.metadata["said"].lower() for f in upd.added)


class ChoosingFake(FakeGenerator):
    """A generator with ``score_choices``: its log-probabilities are scripted per user text.

    Raw scores favour "other" everywhere; the content-free prompt ("N/A") favours it even
    more, so only contextual calibration recovers the intended label:
    intended -1.0 - (-3.0) = 2.0 beats other -0.5 - (-0.1) = -0.4.
    """

    def __init__(self, intended: dict[str, str]) -> None:
        super().__init__(name="chooser")
        self.intended = intended
        self.scored: list[str] = []

    def score_choices(self, batch, choices, *, adapter=None) -> np.ndarray:
        rows = []
        for conv in normalize_batch(batch):
            text = conv[-1]["content"]
            self.scored.append(text)
            if text == "N/A":
                rows.append([-0.1 if c == "other" else -3.0 for c in choices])
            else:
                want = self.intended.get(text, "none")
                rows.append([-1.0 if c == want else -0.5 if c == "other" else -4.0 for c in choices])
        return np.array(rows)


def test_constrained_path_rules_first_model_chooses_the_rest(sqlite_store: Store) -> None:
    gen = ChoosingFake({"I relocated with my family to Porto": "location", "I drive a red Volvo": "likes"})
    mem = Memory(sqlite_store, gen, config=MemoryConfig())  # auto -> constrained: the generator can score
    upd = mem.observe("alice", user("I'm vegan. I relocated with my family to Porto, and I drive a red Volvo"))
    assert upd.method == "constrained"
    # the rules read "I'm vegan"; only the two clauses they cannot read reach the model (+ "N/A" once)
    assert gen.scored == ["I relocated with my family to Porto", "I drive a red Volvo", "N/A"]
    by_key = {f.metadata["key"]: f for f in upd.added}
    assert by_key["diet"].metadata["extractor"] == "rules" and by_key["diet"].model is None
    assert by_key["location"].metadata["seq"] > by_key["diet"].metadata["seq"] > 0  # written in that order
    assert {k: v for k, v in by_key["location"].metadata.items() if k != "seq"} == {
        "key": "location",
        "value": "Porto",
        "negated": False,
        "said": "I relocated with my family to Porto",
        "extractor": "model-choice",
        "label": "location",
    }
    assert by_key["location"].model == "chooser"
    assert by_key["likes:red-volvo"].text == "I like a red Volvo"
    assert gen.calls == []  # nothing was generated: there was no free text to go wrong

    mem.observe("alice", user("I drive a red Volvo"))  # calibration is computed once per extractor
    assert gen.scored[-1] == "I drive a red Volvo"
    assert set(LABELS) >= {f.metadata.get("label", "none") for f in mem.facts("alice")} - {"none"}


def test_constrained_failure_keeps_the_rules_facts(sqlite_store: Store) -> None:
    class Broken(FakeGenerator):
        def score_choices(self, batch, choices, *, adapter=None):
            return np.zeros((1, 2))  # wrong shape

    upd = Memory(sqlite_store, Broken(), config=MemoryConfig(extractor="constrained")).observe(
        "alice", user("I'm vegan and I drive a red Volvo")
    )
    assert [f.text for f in upd.added] == ["I am vegan"] and upd.errors


def test_constrained_needs_a_scoring_generator(sqlite_store: Store) -> None:
    with pytest.raises(ValueError, match="score_choices"):
        Memory(sqlite_store, FakeGenerator(), config=MemoryConfig(extractor="constrained"))
    with pytest.raises(ValueError, match="generator"):
        Memory(sqlite_store, None, config=MemoryConfig(extractor="json"))


# -- concurrency: a background observer and readers, and two writers ------------------------------------


def test_concurrent_observers_and_readers_keep_one_current_location(sqlite_store: Store) -> None:
    """Eight threads state eight cities while four read; two Memory objects (as two processes would)
    write the same fact concurrently. No thread fails, one location stays valid, no fact is doubled."""
    mems = [Memory(sqlite_store), Memory(sqlite_store)]
    cities = ["Lyon", "Paris", "Nice", "Lille", "Nantes", "Brest", "Dijon", "Metz"]
    start = threading.Barrier(len(cities) + 4)
    errors: list[BaseException] = []
    updates: list[MemoryUpdate] = []

    def write(i: int, city: str) -> None:
        try:
            start.wait()
            updates.append(mems[i % 2].observe("alice", user(f"I live in {city}. I'm vegan.")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        try:
            start.wait()
            for _ in range(20):
                assert all(f.user_id == "alice" for f in mems[0].facts("alice"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i, c)) for i, c in enumerate(cities)]
    threads += [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    rows = sqlite_store.get_facts(user_id="alice", valid_only=False)
    assert len([f for f in rows if f.metadata["key"] == "location" and f.is_valid]) == 1
    assert len([f for f in rows if f.metadata["key"] == "diet"]) == 1
    assert len([f for f in rows if f.metadata["key"] == "location"]) == len(cities)


def test_a_writer_that_read_before_a_later_fact_was_written_does_not_close_it(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process wrote 'Paris' at t+10 after this writer took its clock (t+5): closing
    Paris here while that process's settle closes the earlier 'Nice' left no location valid
    (seen under load). Every close now keeps the later fact, whoever writes: Paris survives."""
    other = Memory(sqlite_store)
    other.observe("alice", user("I live in Lyon."))
    (lyon,) = sqlite_store.get_facts(user_id="alice")
    paris = {"fact_id": "paris", "text": "I live in Paris", "valid_from": lyon.valid_from + 10}
    later = lyon.model_copy(update={**paris, "metadata": {**lyon.metadata, "value": "Paris", "seq": 0}})
    sqlite_store.add_fact(later)
    sqlite_store.invalidate_fact(user_id="alice", fact_id=lyon.fact_id, at=later.valid_from)
    monkeypatch.setattr("tailorlm.memory.memory.time.time", lambda: lyon.valid_from + 5)
    Memory(sqlite_store).observe("alice", user("I live in Nice."))
    valid = [f.metadata["value"] for f in sqlite_store.get_facts(user_id="alice") if f.metadata["key"] == "location"]
    assert valid == ["Paris"]


def test_a_forgotten_fact_does_not_come_back_from_resent_history(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store, None)
    said = {"role": "user", "content": "I live in Berlin."}
    (fact,) = mem.observe("u", [said]).added
    assert mem.forget("u", fact_id=fact.fact_id) == 1
    # the client resends the conversation, as OpenAI clients do, with a new question
    history = [said, {"role": "assistant", "content": "Nice!"}, {"role": "user", "content": "Any tips for winter?"}]
    assert mem.observe("u", history).added == [] and mem.facts("u") == []
    # the same history reaching a fresh Memory (another worker, a restart) is still held back
    fresh = Memory(sqlite_store, None)
    assert fresh.observe("u", [said, {"role": "user", "content": "What should I wear?"}]).added == []
    # a new, explicit statement after the deletion adds it again
    again = mem.observe("u", [*history, {"role": "user", "content": "I live in Berlin."}])
    assert [f.text for f in again.added] == [fact.text] and len(mem.facts("u")) == 1


def test_only_turns_not_read_before_are_extracted(sqlite_store: Store) -> None:
    mem = Memory(sqlite_store, None)
    first = [{"role": "user", "content": "I live in Lyon."}]
    mem.observe("u", first)
    mem.observe("u", [{"role": "user", "content": "I moved to Paris."}])
    # resending the first turn must not reopen Lyon over Paris
    update = mem.observe("u", [*first, {"role": "user", "content": "Thanks!"}])
    assert update.added == [] and [f.text for f in mem.facts("u")] == ["I live in Paris"]
