"""Shared fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.data import Document, Store, TaskExample, User


@pytest.fixture
def title_store(tmp_path: Path) -> Store:
    """12 users with 4 dated reviews each; the review-title task (latest review of each user is a query)."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    words = ["warm tone", "bright strings", "sturdy stand", "quiet pedal", "loud amp", "soft pick"]
    recs: list = []
    for u in range(12):
        uid = f"u{u}"
        recs.append(User(user_id=uid))
        for i in range(4):
            w = words[(u + i) % len(words)]
            text, title = f"I like the {w} a lot", f"{w} rocks"
            doc_id = f"{uid}-{i}"
            recs.append(
                Document(user_id=uid, doc_id=doc_id, doc_kind="review", text=text, title=title, timestamp=1000 + i)
            )
            recs.append(
                TaskExample(
                    task="amazon-title",
                    example_id=doc_id,
                    user_id=uid,
                    input=text,
                    target=title,
                    timestamp=1000 + i,
                    doc_id=doc_id,
                )
            )
    store.add(recs)
    return store
