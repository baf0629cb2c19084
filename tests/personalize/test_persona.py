"""Persona-level personalization: members' pooled data only, the right scope, clear config errors."""

from __future__ import annotations

import pytest

from tailorlm.data import Document, Store, User
from tailorlm.personalize import PersonaConfig, PersonaPersonalizer, Query
from tailorlm.tasks import get_task


def test_persona_by_attribute_serves_members_data_only(review_store: Store) -> None:
    persona = PersonaPersonalizer(PersonaConfig(persona_by="age_band", k=5)).fit(review_store)
    out = persona.personalize("zero", Query("guitar strings", task="amazon-title"))
    text = " ".join(m["content"] for m in out.messages)
    assert out.record.scope == "persona" and out.record.persona_id == "age_band=25-34"
    assert "ELDERDATA" not in text and "PEERDATA" in text


def test_persona_examples_never_include_the_requesters_own_entries(review_store: Store) -> None:
    """ "many" is one of the four 25-34 members; the pool shown is the other members' reviews."""
    persona = PersonaPersonalizer(PersonaConfig(persona_by="age_band", k=10)).fit(review_store)
    out = persona.personalize("many", Query("guitar strings", task="amazon-title"))
    ids = {r["id"] for r in out.record.retrieved}
    assert ids == {"persona:age_band=25-34", "doc:one-0", "doc:peer-0", "doc:peer-1", "doc:peer-2"}
    assert "The user is one of 4 users with age band 25-34." in out.messages[0]["content"]


def test_user_without_a_persona_gets_the_bare_task_prompt(review_store: Store) -> None:
    """No age_band: no persona block, scope "none", and the user's own review is not used either."""
    review_store.add(
        [
            User(user_id="solo"),
            Document(user_id="solo", doc_id="solo-0", doc_kind="review", text="SOLODATA strings", timestamp=100),
        ]
    )
    persona = PersonaPersonalizer(PersonaConfig(persona_by="age_band", k=5)).fit(review_store)
    out = persona.personalize("solo", Query("guitar strings", task="amazon-title"))
    assert out.record.scope == "none" and out.record.persona_id is None
    assert out.blocks == [] and out.record.retrieved == []
    assert out.messages[0]["content"] == get_task("amazon-title").system


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"persona_by": ""}, "persona_by"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"k": -1}, "k"),
    ],
    ids=["empty-persona-by", "zero-clusters", "negative-k"],
)
def test_persona_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        PersonaConfig(**kwargs)


def test_cluster_personas_without_an_embedder_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match=r"persona_by='cluster'\) needs an embedder"):
        PersonaPersonalizer(PersonaConfig(persona_by="cluster"))
