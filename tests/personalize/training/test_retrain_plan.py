"""Unlearning without a model: persona descriptions, the retrain plan and the manifest's guard.

LLM-written persona descriptions quote a sample of members' entries (here the fake model
echoes them, so a description visibly holds them); they are stored with a manifest, marked
stale when a quoted member is deleted, and ``retrain_stale`` writes them again without
that member. An artifact that learned only from deleted users is removed; one with no
rebuilder is skipped; the trainers' manifest refuses a row of an excluded user.
"""

from __future__ import annotations

import pytest

from tailorlm.data import Artifact, ArtifactRef, Store, TrainingManifest
from tailorlm.personalize.persona.config import PersonaConfig
from tailorlm.personalize.persona.method import PersonaPersonalizer
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.provenance import training_manifest
from tailorlm.personalize.training.retrain import plan_retrain, retrain_stale
from tailorlm.testing import FakeGenerator

YOUNG = ArtifactRef("persona", "age_band=25-34", "persona", "default")
ELDER = ArtifactRef("persona", "age_band=65+", "persona", "default")


@pytest.fixture
def described(review_store: Store) -> Store:
    PersonaPersonalizer(
        PersonaConfig(persona_by="age_band", k=0, describe_with_llm=True), generator=FakeGenerator()
    ).fit(review_store)
    return review_store


def _description(store: Store, ref: ArtifactRef) -> str:
    art = store.get_artifact(**ref.to_dict())
    assert art is not None
    return str(art.payload["description"])


def test_persona_descriptions_record_whose_entries_they_quote(described: Store) -> None:
    subjects = described.subjects_of(["many", "one", "zero", "peer", "elder"])
    prov = described.provenance(YOUNG)
    assert prov.known and "PEERDATA" in _description(described, YOUNG)
    assert prov.users == {subjects["many"]: 2, subjects["one"]: 1, subjects["peer"]: 2, subjects["zero"]: 0}
    assert described.provenance(ELDER).users == {subjects["elder"]: 2}
    manifest = described.get_artifact(**YOUNG.to_dict()).payload["manifest"]  # type: ignore[union-attr]
    assert manifest["options"]["builder"] == "persona-description" and manifest["options"]["persona_by"] == "age_band"


def test_deleting_a_quoted_member_then_retrain_stale_describes_the_persona_without_them(described: Store) -> None:
    peer = described.subjects_of(["peer"])["peer"]
    assert described.delete_user(user_id="zero").stale == []  # a member whose entries were not quoted
    report = described.delete_user(user_id="peer")
    assert [a.ref for a in report.stale] == [YOUNG]

    (plan,) = plan_retrain(described)
    assert plan.action == "retrain" and plan.population == ("many", "one") and plan.exclude == ()

    outcomes = retrain_stale(TrainContext(described, None, FakeGenerator()))  # type: ignore[arg-type]
    assert [o.status for o in outcomes] == ["retrained"]
    assert described.stale_artifacts() == []
    assert "PEERDATA" not in _description(described, YOUNG) and "guitar strings" in _description(described, YOUNG)
    prov = described.provenance(YOUNG)
    assert peer not in prov.users and not prov.stale and len(prov.users) == 2
    art = described.get_artifact(**YOUNG.to_dict())
    assert art is not None and art.payload["members"] == 2 and art.payload["manifest"]["excluded"] == 1


def test_an_artifact_that_learned_only_from_deleted_users_is_removed(described: Store) -> None:
    described.delete_user(user_id="elder")
    (plan,) = plan_retrain(described)
    assert plan.action == "remove" and plan.artifact.ref == ELDER
    (outcome,) = retrain_stale(TrainContext(described, None, None), [plan])  # type: ignore[arg-type]
    assert outcome.status == "removed" and described.get_artifact(**ELDER.to_dict()) is None
    assert described.stale_artifacts() == []


def test_unknown_builders_are_skipped_and_stay_stale(described: Store) -> None:
    other = ArtifactRef("global", "", "centroids", "default")
    manifest = TrainingManifest(users={"one": 1}, options={"builder": "?"})
    described.put_artifact(Artifact(scope="global", kind="centroids"), manifest=manifest)
    described.delete_user(user_id="one")
    plans = {p.artifact.ref: p for p in plan_retrain(described)}
    assert plans[other].action == "skip" and "no rebuilder" in plans[other].reason
    assert next(p.artifact.ref for p in plan_retrain(described)) == other  # global scope first
    outcomes = retrain_stale(TrainContext(described, None, FakeGenerator()), [plans[other]])  # type: ignore[arg-type]
    assert [o.status for o in outcomes] == ["skipped"]
    assert other in {a.ref for a in described.stale_artifacts()}


def test_training_manifest_counts_rows_and_refuses_excluded_users(review_store: Store) -> None:
    job = TrainJob("lora", "global", "", "amazon-title", {"steps": 1})
    ctx = TrainContext(review_store, None, None, users=["many", "one", "peer"])  # type: ignore[arg-type]
    manifest = training_manifest(job, ctx, contributors=["many", "many", "one"], population=ctx.population())
    assert dict(manifest.users) == {"many": 2, "one": 1, "peer": 0}
    assert manifest.options == {"builder": "train", "job": job.to_dict()} and manifest.inherits == ()
    ctx.exclude = frozenset({"peer"})
    assert ctx.population() == ["many", "one"]
    with pytest.raises(ValueError, match="1 excluded user"):
        training_manifest(job, ctx, contributors=["many", "peer"], population=["many"])
    ctx.rebuild = {"of": "lora-global-1", "excluded": 2}
    rebuilt = training_manifest(job, ctx, contributors=["many"], population=ctx.population())
    assert rebuilt.excluded == 2 and rebuilt.options["rebuild"] == {"of": "lora-global-1", "excluded": 2}
