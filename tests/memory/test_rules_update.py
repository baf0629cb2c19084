"""The deterministic parts of memory: reading clauses, forget requests, slot filling, and the update plan."""

from __future__ import annotations

import pytest

from tailorlm.data import Fact
from tailorlm.memory import MemoryConfig
from tailorlm.memory.extract import slot_fill
from tailorlm.memory.rules import Clause, durable_first_person, parse_clause, parse_forget, split_clauses
from tailorlm.memory.schema import make_candidate, norm_text, slug
from tailorlm.memory.update import contradicts, plan_update


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("I live in Lyon", [("location", "Lyon", False)]),
        ("I moved to Paris last year, so update that", [("location", "Paris", False)]),
        ("I no longer live in Lyon", [("location", "Lyon", True)]),
        ("I'm vegetarian", [("diet", "vegetarian", False)]),
        ("I'm not vegan anymore", [("diet", "vegan", True)]),
        ("my daughter is 5", [("family:daughter:age", "5", False)]),
        ("My wife's name is Marie", [("family:wife:name", "Marie", False)]),
        ("Hi, I'm Tom", [("name", "Tom", False)]),
        ("I work as a nurse at the hospital", [("job", "a nurse", False)]),
        ("I work at Google", [("employer", "Google", False)]),
        ("I'm 34 years old", [("age", "34", False)]),
        ("I'm from Texas originally", [("hometown", "Texas", False)]),
        ("I like jazz and blues", [("likes:jazz", "jazz", False), ("likes:blue", "blues", False)]),
        ("I don't like jazz anymore", [("likes:jazz", "jazz", True)]),
        ("I can't stand horror movies", [("likes:horror-movie", "horror movies", True)]),
        ("I have two cats", [("pet:cat", "two cats", False)]),
        ("My favorite color is blue", [("favorite:color", "blue", False)]),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_rules_read_first_person_statements(said: str, expected: list[tuple[str, str, bool]]) -> None:
    [clause] = [c for c in split_clauses([said]) if parse_clause(c)]
    assert [(c.key, c.value, c.negated) for c in parse_clause(clause)] == expected


@pytest.mark.parametrize(
    "said",
    [
        "Do you know where I live?",
        "If I lived in Paris I would be happy",
        "I used to live in Lyon",
        "The weather is nice today",
        "I love it",
        "My friend lives in Rome",
        "I'm French",
    ],
)
def test_rules_skip_what_is_not_a_durable_fact_about_the_speaker(said: str) -> None:
    assert all(parse_clause(c) is None for c in split_clauses([said]))


def test_clauses_split_on_new_first_person_statements_and_mark_questions() -> None:
    clauses = split_clauses(["I live in Lyon and I'm vegetarian. Any tips?"])
    assert [(c.text, c.question) for c in clauses] == [
        ("I live in Lyon", False),
        ("I'm vegetarian", False),
        ("Any tips", True),
    ]


@pytest.mark.parametrize(
    ("said", "everything", "keys", "text"),
    [
        ("Please forget where I live", False, ("location",), "where I live"),
        ("Can you forget my name?", False, ("name",), "my name"),
        ("forget that I live in Paris", False, (), "I live in Paris"),
        ("delete my daughter", False, ("family:daughter",), "my daughter"),
        ("Forget everything about me", True, (), ""),
    ],
)
def test_forget_requests(said: str, everything: bool, keys: tuple[str, ...], text: str) -> None:
    [clause] = split_clauses([said])
    req = parse_forget(clause)
    assert req is not None and (req.everything, req.keys, req.text) == (everything, keys, text)


@pytest.mark.parametrize("said", ["forget it", "Forget about that", "I forgot my keys", "I live in Paris"])
def test_not_forget_requests(said: str) -> None:
    assert all(parse_forget(c) is None for c in split_clauses([said]))


def test_durable_first_person_filter() -> None:
    assert durable_first_person(Clause("I drive a red Volvo"))
    assert not durable_first_person(Clause("I need help with my essay"))
    assert not durable_first_person(Clause("I drive a red Volvo", question=True))


@pytest.mark.parametrize(
    ("label", "said", "key", "value"),
    [
        ("location", "I relocated to Berlin with my partner", "location", "Berlin"),
        ("location", "I'm originally from Quebec", "hometown", "Quebec"),
        ("food", "I eat no meat, I'm vegan", "diet", "vegan"),
        ("age", "my son turned 12", "family:son:age", "12"),
        ("likes", "I really adore old trains", "likes:old-train", "old trains"),
        # the model's slot finds no span of its shape: demoted to a key that never contradicts
        ("job", "I play the guitar", "other:i-play-guitar", "I play the guitar"),
        ("location", "I drive a red Volvo", "other:i-drive-red-volvo", "I drive a red Volvo"),
    ],
)
def test_slot_fill_copies_values_from_the_users_words(label: str, said: str, key: str, value: str) -> None:
    cand = slot_fill(label, said)
    assert cand is not None and (cand.key, cand.value) == (key, value)
    assert cand.value in said and cand.extractor == "model-choice" and cand.label == label


def test_slot_fill_none_is_no_fact() -> None:
    assert slot_fill("none", "I drive a red Volvo") is None


def test_norm_and_slug() -> None:
    assert norm_text("I'm a Vegetarian!") == "i am vegetarian"
    assert slug("Horror Movies") == "horror-movie"


# -- the update plan -------------------------------------------------------------------------


def _fact(fid: str, key: str, value: str, text: str, negated: bool = False) -> Fact:
    return Fact(user_id="u", fact_id=fid, text=text, metadata={"key": key, "value": value, "negated": negated})


def _rule(key: str, value: str, said: str, negated: bool = False):
    cand = make_candidate(key, value, said=said, extractor="rules", negated=negated)
    assert cand is not None
    return cand


CFG = MemoryConfig()


def test_plan_hand_worked_example() -> None:
    """Known: location=Lyon, likes:jazz, diet=vegetarian. The turn says "I moved to Paris",
    "I don't like jazz anymore", "I'm vegetarian", "I like cats".

    - location is single-valued and Paris != Lyon: add Paris, close Lyon;
    - likes:jazz negated vs. likes:jazz stated: same key, opposite polarity: add, close the old;
    - diet=vegetarian again: a duplicate of f3, nothing written;
    - likes:cat is new and multi-valued: added, closes nothing.
    So add 3, close {f1, f2}, duplicates [f3].
    """
    known = [
        _fact("f1", "location", "Lyon", "I live in Lyon"),
        _fact("f2", "likes:jazz", "jazz", "I like jazz"),
        _fact("f3", "diet", "vegetarian", "I am vegetarian"),
    ]
    cands = [
        _rule("location", "Paris", "I moved to Paris"),
        _rule("likes", "jazz", "I don't like jazz anymore", negated=True),
        _rule("diet", "vegetarian", "I'm vegetarian"),
        _rule("likes", "cats", "I like cats"),
    ]
    plan = plan_update(known, cands, config=CFG)
    assert [c.text for c in plan.add] == ["I live in Paris", "I don't like jazz", "I like cats"]
    assert sorted(f.fact_id for f in plan.invalidate) == ["f1", "f2"]
    assert plan.duplicates == ["f3"]


def test_negated_single_valued_closes_only_the_same_value() -> None:
    lyon = _fact("f1", "location", "Lyon", "I live in Lyon")
    assert contradicts(_rule("location", "Lyon", "I no longer live in Lyon", negated=True), lyon, CFG)
    assert not contradicts(_rule("location", "Rome", "I no longer live in Rome", negated=True), lyon, CFG)


def test_multi_valued_keys_coexist() -> None:
    plan = plan_update(
        [_fact("f1", "likes:jazz", "jazz", "I like jazz")], [_rule("likes", "rock", "I like rock")], config=CFG
    )
    assert len(plan.add) == 1 and plan.invalidate == [] and plan.duplicates == []


def test_within_a_turn_the_last_single_valued_statement_wins() -> None:
    cands = [_rule("location", "Lyon", "I live in Lyon"), _rule("location", "Paris", "I moved to Paris")]
    assert [c.value for c in plan_update([], cands, config=CFG).add] == ["Paris"]


class _Table:
    """Similarity from a fixed table (a stand-in for an embedder): 1.0 on the diagonal, else the table's value."""

    def __init__(self, pairs: dict[frozenset[str], float]) -> None:
        self.pairs = pairs

    def __call__(self, new, known):
        return [[self.pairs.get(frozenset((a, b)), 1.0 if a == b else 0.0) for b in known] for a in new]


def test_embedding_dedupe_but_never_across_a_contradiction() -> None:
    known = [
        _fact("f1", "likes:jazz-music", "jazz music", "I like jazz music"),
        _fact("f2", "location", "Lyon", "I live in Lyon"),
    ]
    sim = _Table(
        {
            frozenset(("I like jazz", "I like jazz music")): 0.95,
            frozenset(("I live in Paris", "I live in Lyon")): 0.97,  # close in meaning, yet a contradiction
        }
    )
    cands = [_rule("likes", "jazz", "I love jazz"), _rule("location", "Paris", "I moved to Paris")]
    plan = plan_update(known, cands, config=CFG, similarity=sim)
    assert plan.duplicates == ["f1"]
    assert [c.value for c in plan.add] == ["Paris"] and [f.fact_id for f in plan.invalidate] == ["f2"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"extractor": "magic"},
        {"dedupe_threshold": 0.0},
        {"max_retries": -1},
        {"max_new_tokens": 4},
        {"max_facts_per_turn": 0},
        {"source": " "},
    ],
    ids=["extractor", "threshold", "retries", "tokens", "facts", "source"],
)
def test_config_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MemoryConfig(**kwargs)


@pytest.mark.parametrize(
    "said",
    [
        "Big news: I moved to Berlin last month.",
        "I've relocated to Berlin.",
        "Update - I moved to Berlin.",
        "These days I live in Berlin.",
        "We moved to Berlin.",
        "So, we relocated to Berlin in May.",
        "Quick update: we're living in Berlin now",
    ],
)
def test_everyday_phrasings_of_a_move_give_the_new_city(said: str) -> None:
    facts = [c for clause in split_clauses([said]) for c in parse_clause(clause) or []]
    assert [(c.key, c.value, c.negated) for c in facts] == [("location", "Berlin", False)]
