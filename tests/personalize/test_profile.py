"""Profile-augmented prompting: summaries are cached per history snapshot and refreshed on change."""

from __future__ import annotations

from pathlib import Path

from tailorlm.data import Document, Store, User
from tailorlm.personalize import ProfileConfig, ProfilePersonalizer, Query
from tailorlm.testing import FakeGenerator


def test_summary_is_cached_and_refreshed_when_data_changes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.add(
        [
            User(user_id="u", occupation="drummer"),
            Document(user_id="u", doc_kind="review", text="loud snare", rating=5, timestamp=1),
        ]
    )
    gen = FakeGenerator()
    profile = ProfilePersonalizer(ProfileConfig(), generator=gen).fit(store)
    query = Query("new sticks", task="amazon-title")
    first = profile.personalize("u", query)
    assert len(gen.calls) == 1
    assert "works as drummer" in first.messages[0]["content"]
    assert "loud snare" in first.messages[0]["content"]  # the fake summary echoes its input
    profile.personalize("u", query)
    assert len(gen.calls) == 1  # in-memory cache
    fresh = ProfilePersonalizer(ProfileConfig(), generator=gen).fit(store)
    fresh.personalize("u", query)
    assert len(gen.calls) == 1  # the store artifact is reused by a new instance
    store.add([Document(user_id="u", doc_kind="review", text="bright cymbal", rating=4, timestamp=2)])
    refreshed = profile.personalize("u", query)
    assert len(gen.calls) == 2 and "bright cymbal" in refreshed.messages[0]["content"]
    assert len(store.list_artifacts(scope="user", owner="u", kind="profile")) == 2  # both snapshots, with provenance
    art = store.list_artifacts(scope="user", owner="u", kind="profile")[0]
    assert art.model == "fake"


def test_summary_never_sees_the_future(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.add(
        [
            Document(user_id="u", doc_kind="review", text="old review", timestamp=1),
            Document(user_id="u", doc_kind="review", text="FUTURE review", timestamp=9),
        ]
    )
    gen = FakeGenerator()
    out = (
        ProfilePersonalizer(ProfileConfig(attributes=False), generator=gen)
        .fit(store)
        .personalize("u", Query("x", task="amazon-title", timestamp=5))
    )
    assert "FUTURE" not in out.messages[0]["content"] and "FUTURE" not in str(gen.calls[0].batch)
