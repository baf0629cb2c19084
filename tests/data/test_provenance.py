"""Training provenance in the store, on SQLite and on a real PostgreSQL server (``store`` fixture).

A manifest is stored with its artifact as keyed hashes (no user id in clear); deleting a
user marks exactly the artifacts that learned from them stale, in the deletion's own
transaction, inherited marks included; a fresh manifest clears the mark; an artifact
without one has unknown provenance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tailorlm.data import Artifact, ArtifactRef, Document, Store, TrainingManifest

GLOBAL = ArtifactRef("global", "", "adapter", "lora|t|default|b")
PERSONA = ArtifactRef("persona", "age=30", "persona", "default")
BOB = ArtifactRef("user", "bob", "adapter", "lora|t|init=global|b")


def _put(store: Store, ref: ArtifactRef, users: dict[str, int] | None, **kw) -> None:
    art = Artifact(scope=ref.scope, owner=ref.owner, kind=ref.kind, key=ref.key, payload={"name": f"n-{ref.scope}"})  # type: ignore[arg-type]
    store.put_artifact(art, manifest=None if users is None else TrainingManifest(users=users, task="t", **kw))


@pytest.fixture
def trained(store: Store) -> Store:
    """alice, bob, carol, dave (no data); a global adapter trained on alice and bob (carol in its
    population only), a persona description quoting carol, and bob's adapter started from the global one."""
    store.add([Document(user_id=u, text=f"{u} wrote this") for u in ("alice", "bob", "carol", "dave")])
    _put(store, GLOBAL, {"alice": 3, "bob": 2, "carol": 0}, options={"builder": "train", "job": {"method": "lora"}})
    _put(store, PERSONA, {"carol": 2, "bob": 0})
    _put(store, BOB, {"bob": 2}, inherits=(GLOBAL,))
    return store


def test_manifest_is_stored_as_keyed_hashes_and_counts(trained: Store) -> None:
    subjects = trained.subjects_of(["alice", "bob", "carol"])
    prov = trained.provenance(GLOBAL)
    assert prov.known and not prov.stale
    assert prov.users == {subjects["alice"]: 3, subjects["bob"]: 2, subjects["carol"]: 0}
    assert prov.includes(subjects["alice"]) and not prov.includes(subjects["carol"])  # population only
    manifest = trained.get_artifact(**GLOBAL.to_dict()).payload["manifest"]  # type: ignore[union-attr]
    assert manifest["users"] == 2 and manifest["population"] == 3 and manifest["examples"] == 5
    assert manifest["options"] == {"builder": "train", "job": {"method": "lora"}} and manifest["task"] == "t"
    with trained.engine.connect() as conn:
        stored = {r[0] for r in conn.execute(text("SELECT subject FROM artifact_users"))}
    assert stored.isdisjoint({"alice", "bob", "carol"}) and all(len(s) == 64 for s in stored)
    assert trained.subjects_of(["alice"]) == {"alice": subjects["alice"]}  # stable per store
    assert set(trained.trained_on(user_id="bob")) == {GLOBAL, BOB}
    assert trained.trained_on(user_id="carol") == [PERSONA]
    # bob's adapter holds what the global one learned: alice too
    assert trained.provenance(BOB).includes(subjects["alice"])


def test_deleting_a_trainer_marks_the_artifacts_that_learned_from_them(trained: Store) -> None:
    alice = trained.subjects_of(["alice"])["alice"]
    report = trained.delete_user(user_id="alice")
    assert [a.ref for a in report.stale] == sorted([GLOBAL, BOB])
    marks = {a.ref: a for a in trained.stale_artifacts()}
    assert set(marks) == {GLOBAL, BOB}
    glob = marks[GLOBAL]
    assert glob.deleted_subjects == (alice,) and glob.deleted_users == 1 and glob.stale_since > 0
    assert glob.name == "n-global" and glob.manifest is not None and "learned from 1 deleted user" in glob.describe()
    assert trained.provenance(GLOBAL).deleted == {alice: glob.stale_since}
    assert not trained.provenance(PERSONA).stale
    assert [a.ref for a in trained.stale_artifacts(kind="persona")] == []
    with trained.engine.connect() as conn:  # the deleted user's id is nowhere in the provenance
        rows = conn.execute(text("SELECT owner, subject FROM artifact_users")).all()
    assert all("alice" not in (o, s) for o, s in rows)


def test_a_user_who_trained_nothing_marks_nothing(trained: Store) -> None:
    carol = trained.subjects_of(["carol"])["carol"]
    assert trained.delete_user(user_id="dave").stale == []  # in no manifest at all
    assert trained.stale_artifacts() == []
    report = trained.delete_user(user_id="carol")  # rows in the persona description only
    assert [a.ref for a in report.stale] == [PERSONA]
    assert carol not in trained.provenance(GLOBAL).users  # her population-only row is gone
    assert report.rows["artifact_users"] == 2  # global's and the inherited one in bob's adapter


def test_the_owners_own_artifacts_go_and_are_not_listed(trained: Store) -> None:
    report = trained.delete_user(user_id="bob")
    assert BOB not in {a.ref for a in report.stale} and trained.get_artifact(**BOB.to_dict()) is None
    assert [a.ref for a in report.stale] == [GLOBAL]
    assert trained.provenance(BOB).users == {}


def test_a_new_manifest_clears_the_mark_and_a_child_inherits_marks(trained: Store) -> None:
    trained.delete_user(user_id="alice")
    later = ArtifactRef("user", "carol", "adapter", "lora|t|init=global|b")
    _put(trained, later, {"carol": 1}, inherits=(GLOBAL,))  # started from a stale parent: stale at birth
    assert later in {a.ref for a in trained.stale_artifacts()}
    _put(trained, GLOBAL, {"bob": 2, "carol": 1}, excluded=1)  # rebuilt without alice
    assert GLOBAL not in {a.ref for a in trained.stale_artifacts()}
    manifest = trained.get_artifact(**GLOBAL.to_dict()).payload["manifest"]  # type: ignore[union-attr]
    assert manifest["excluded"] == 1 and manifest["users"] == 2


def test_without_a_manifest_provenance_is_unknown(trained: Store, tmp_path: Path) -> None:
    legacy = ArtifactRef("global", "", "adapter", "legacy")
    _put(trained, legacy, None)
    assert not trained.provenance(legacy).known and trained.provenance(legacy).users == {}
    _put(trained, GLOBAL, None)  # replaced without one: the old rows no longer describe it
    assert not trained.provenance(GLOBAL).known and trained.provenance(GLOBAL).users == {}
    assert trained.delete_artifact(**BOB.to_dict())
    assert trained.provenance(BOB).users == {}
    assert trained.delete_user(user_id="alice").stale == []


def test_manifest_refuses_bad_users() -> None:
    with pytest.raises(ValueError, match="non-empty user ids"):
        TrainingManifest(users={"": 1})
    with pytest.raises(ValueError, match="counts >= 0"):
        TrainingManifest(users={"u": -1})


def test_a_contributor_deleted_while_it_trained_makes_it_stale_from_the_start(trained: Store) -> None:
    gone, late = trained.subjects_of(["gone", "late"]).values()
    _put(trained, GLOBAL, {"bob": 1, "gone": 2, "late": 0})  # neither "gone" nor "late" is stored (any more)
    prov = trained.provenance(GLOBAL)
    assert prov.deleted.keys() == {gone} and late not in prov.users
    assert [a.ref for a in trained.stale_artifacts()] == [GLOBAL]
