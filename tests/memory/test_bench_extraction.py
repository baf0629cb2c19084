"""benchmarks/bench_extraction.py's matching and scoring on hand-made vectors (no model, no data)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_extraction.py"


def _load_script() -> ModuleType:
    """The script is not a package module: load it by path, registered so dataclasses resolve."""
    spec = importlib.util.spec_from_file_location("bench_extraction", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bx = _load_script()


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


# A fake embedder: each text maps to a constructed unit vector.
VECS = {
    "i have two dogs.": _unit(1, 0, 0),
    "i like country music.": _unit(0, 1, 0),
    "i live in a big city.": _unit(0, 0, 1),
    "I have 2 dogs": _unit(1, 0.1, 0),  # ~0.995 to the dogs line
    "I like music": _unit(0.2, 1, 0.2),  # ~0.96 to country, ~0.19 to the others
    "I like them": _unit(1, 1, 0),  # 0.707 to both dogs and country: must not match twice
    "my two dogs are great": _unit(1, 0, 0),
    "where do you live ?": _unit(0.3, 0, 1),  # ~0.96 to the city line
}


def fake_embed(texts: Sequence[str]) -> np.ndarray:
    return np.stack([VECS[t] for t in texts]) if texts else np.zeros((0, 3), dtype=np.float32)


PERSONA = ["i have two dogs.", "i like country music.", "i live in a big city."]


def test_greedy_is_one_to_one_best_first() -> None:
    sim = np.array([[0.9, 0.8], [0.85, 0.1]])  # greedy takes (0,0) first, then (1,1) is all that is left
    assert bx.greedy_pairs(sim) == [(0.9, 0, 0), (pytest.approx(0.1), 1, 1)]
    assert bx.greedy_pairs(np.zeros((0, 3))) == []


def test_scoring_counts_at_thresholds() -> None:
    facts = ["I have 2 dogs", "I like music", "I like them"]
    turns = ["my two dogs are great", "where do you live ?"]
    s = bx.score_dialogue(facts, PERSONA, turns, fake_embed)
    # "I like them" loses both lines to better facts; its best free line is the city (sim 0).
    assert [(f, p) for _, f, p in s.pairs] == [(0, 0), (1, 1), (2, 2)]
    # (matched, facts, persona lines, evidenced lines, matched evidenced)
    assert s.counts(0.5) == (2, 3, 3, 2, 1)  # evidenced: dogs and city; only dogs is matched
    assert s.counts(0.97) == (1, 3, 3, 1, 1)  # only the dogs pair (0.995) and the dogs turn (1.0)
    assert s.counts(1.01) == (0, 3, 3, 0, 0)
    m = bx.prf(np.array([s.counts(0.5)], dtype=float))
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["recall_evidenced"] == pytest.approx(1 / 2)


def test_no_facts_scores_zero_without_dividing_by_zero() -> None:
    s = bx.score_dialogue([], PERSONA, [], fake_embed)
    assert s.counts(0.3) == (0, 0, 3, 0, 0)
    assert bx.prf(np.array([s.counts(0.3)], dtype=float)) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "recall_evidenced": 0.0,
    }


def test_micro_pooling_and_threshold_choice() -> None:
    good = bx.score_dialogue(["I have 2 dogs", "I like music"], PERSONA, [], fake_embed)
    bad = bx.score_dialogue(["I like them"], PERSONA, [], fake_embed)
    m = bx.prf(bx.table([good, bad], 0.5))  # "I like them" takes the dogs line at 0.707 in its own dialogue
    assert m["precision"] == pytest.approx(3 / 3)
    assert m["recall"] == pytest.approx(3 / 6)  # pooled: 3 matched of 3 + 3 persona lines
    m = bx.prf(bx.table([good, bad], 0.75))
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 6)
    t, curve = bx.choose_threshold([good, bad])
    # P and R only fall as the threshold rises (facts are fixed): the lowest grid value wins.
    assert t == pytest.approx(0.30)
    assert [row["threshold"] for row in curve] == bx.GRID
    ci = bx.with_ci(bx.table([good, bad], 0.5), seed=0)
    assert ci["precision"]["low"] <= ci["precision"]["estimate"] <= ci["precision"]["high"]


def test_chance_rotation_and_calibrated_threshold() -> None:
    dogs = bx.Dialogue(0, ["i have two dogs."], [], facts=["I have 2 dogs"])
    city = bx.Dialogue(1, ["i live in a big city."], [], facts=["I like them"])
    null = bx.null_scores([dogs, city], fake_embed)
    # dogs' fact against the city persona (0.0), city's fact against the dogs persona (0.707)
    assert [p[0][0] for p in (n.pairs for n in null)] == [pytest.approx(0.0), pytest.approx(0.7071, abs=1e-3)]
    # chance precision is 1/2 up to 0.70, 0 from 0.75: the calibrated threshold is 0.75
    assert bx.calibrated_threshold(null) == pytest.approx(0.75)
    assert bx.calibrated_threshold(null, max_chance=0.5) == pytest.approx(0.30)


def test_line_type() -> None:
    assert bx.line_type("i'm a stunt double.") == "i am"
    assert bx.line_type("My favorite music is country.") == "my favorite"
