"""The constrained path with the real local model (SmolLM2-135M): schema-valid facts from a real sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tailorlm.data import Fact, Store
from tailorlm.memory import LABELS, Memory, MemoryConfig


@pytest.mark.model
def test_real_model_constrained_extraction_is_schema_valid(smollm, tmp_path: Path) -> None:
    """The rules read "I live in Lyon"; the two clauses they cannot read go to the model, which
    can only choose a label, so every fact is valid by construction, whatever it chooses."""
    store = Store(f"sqlite:///{tmp_path / 'mem.db'}")
    mem = Memory(store, smollm, config=MemoryConfig(extractor="constrained"))
    said = "I live in Lyon, I drive an old red Volvo and I spend my weekends restoring furniture."
    upd = mem.observe("alice", [{"role": "user", "content": said}, {"role": "assistant", "content": "I'm a bot."}])

    assert upd.method == "constrained" and upd.errors == []
    assert "I live in Lyon" in {f.text for f in upd.added}
    by_model = [f for f in upd.added if f.metadata["extractor"] == "model-choice"]
    assert by_model, f"the model labelled every clause 'none': {upd}"
    for fact in upd.added:
        Fact.model_validate(fact.model_dump())  # round-trips through the schema
        md = fact.metadata
        assert re.fullmatch(r"[a-z_]+(?::[a-z0-9_-]+)*", md["key"])
        assert md["value"] in said and md["said"] in said  # copied from the user's words, never invented
    for fact in by_model:
        assert fact.metadata["label"] in LABELS and fact.model == smollm.name
    assert store.get_facts(user_id="alice") == sorted(upd.added, key=lambda f: (f.valid_from, f.fact_id))
    print({f.metadata["said"]: (f.metadata.get("label"), f.metadata["key"]) for f in upd.added})
    store.close()
