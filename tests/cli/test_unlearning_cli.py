"""The unlearning commands without a model: ``data delete-user`` lists what went stale,
``train list`` shows provenance (and says "unknown" for records without a manifest), and
``train retrain-stale`` removes, skips or reports failures (the rebuild with a real model
is tests/personalize/training/test_unlearning.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tailorlm import Artifact, Store, load_settings
from tailorlm.adapters import AdapterKey, AdapterRegistry
from tailorlm.cli import app
from tailorlm.data import Document, TrainingManifest
from tailorlm.personalize.training.jobs import TrainContext
from tailorlm.testing import FakeGenerator

runner = CliRunner()
GLOBAL = AdapterKey("lora", "global", "", "amazon-title")
JOB = {"method": "lora", "scope": "global", "owner": "", "task": "amazon-title", "config": {"steps": 1}}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The CLI's store (settings from the environment) with three users, wide consoles, and no
    model: building the training context fails the test unless a test replaces it."""
    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TAILORLM_STORE_URL", raising=False)
    for module in ("train", "data"):
        monkeypatch.setattr(f"tailorlm.cli.{module}.console", Console(width=400))

    def no_model(*a: Any, **kw: Any) -> Any:
        raise AssertionError("retrain-stale loaded the base model although nothing needs training")

    monkeypatch.setattr("tailorlm.cli._training.train_context", no_model)
    s = Store.from_settings(load_settings())
    s.add([Document(user_id=u, text=f"{u} wrote this") for u in ("alice", "bob", "carol")])
    return s


def _register(store: Store, users: dict[str, int] | None, key: AdapterKey = GLOBAL) -> Any:
    registry = AdapterRegistry(store, base_model="fake")
    folder = registry.folder_for(key)
    (folder / "adapter_model.safetensors").write_bytes(b"w")
    manifest = None if users is None else TrainingManifest(users=users, options={"builder": "train", "job": JOB})
    return registry.register(key, folder, {"steps": 1, "loss_curve": [1.0]}, manifest=manifest)


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_list_says_unknown_for_records_without_a_manifest(store: Store) -> None:
    _register(store, None)
    _register(store, {"bob": 2}, AdapterKey("lora", "global", "", "amazon-rating"))
    out = _invoke("train", "list").output
    assert "unknown (no manifest)" in out and "1 user(s), 2 rows" in out and "STALE" not in out
    assert "retrain-stale" not in out


def test_delete_user_lists_the_stale_artifacts_and_list_marks_them(store: Store) -> None:
    rec = _register(store, {"alice": 2, "bob": 1})
    store.put_artifact(  # a persona description quoting alice
        Artifact(scope="persona", owner="age=30", kind="persona", payload={"description": "d"}),
        manifest=TrainingManifest(users={"alice": 1}, options={"builder": "persona-description"}),
    )
    out = _invoke("data", "delete-user", "--user", "alice", "--yes").output
    assert "2 shared artifact(s) learned from alice and are now stale" in out
    assert rec.name in out and "persona persona age=30" in out and "tailorlm train retrain-stale" in out
    listed = _invoke("train", "list").output
    assert "STALE: 1 deleted user(s)" in listed and "persona persona age=30" in listed
    assert "rebuild the stale artifacts" in listed
    quiet = _invoke("data", "delete-user", "--user", "carol", "--yes").output  # trained nothing
    assert "stale" not in quiet


def test_delete_user_purges_the_train_queue_and_the_embedding_cache(store: Store, tmp_path: Path) -> None:
    from tailorlm.personalize.training.jobs import TrainJob
    from tailorlm.personalize.training.queue import TrainQueue

    queue = TrainQueue(tmp_path / "cache" / "train-queue.sqlite")  # the default `train queue` file
    queue.add([TrainJob("lora", "user", "alice", "chat"), TrainJob("lora", "user", "bob", "chat")])
    queue.close()
    out = _invoke("data", "delete-user", "--user", "alice", "--yes").output
    assert "purged from the caches: train_queue: 1" in out
    queue = TrainQueue(tmp_path / "cache" / "train-queue.sqlite")
    assert [q.job.owner for q in queue.jobs()] == ["bob"]
    queue.close()
    assert not (tmp_path / "cache" / "embeddings.sqlite").exists()  # no cache was made to be purged


def test_retrain_stale_removes_what_only_deleted_users_taught_without_loading_a_model(store: Store) -> None:
    rec = _register(store, {"alice": 2, "bob": 0})
    store.delete_user(user_id="alice")
    dry = _invoke("train", "retrain-stale", "--dry-run")
    assert dry.exit_code == 0 and "remove" in dry.output and "learned only from deleted users" in dry.output
    assert rec.path.exists()
    result = _invoke("train", "retrain-stale")
    assert result.exit_code == 0 and "removed" in result.output
    assert not rec.path.exists() and AdapterRegistry(store, base_model="fake").get(GLOBAL) is None
    assert store.stale_artifacts() == []
    assert _invoke("train", "retrain-stale").output.startswith("no stale artifacts")


def test_a_failed_rebuild_exits_1_and_the_artifact_stays_stale(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(store, {"alice": 2, "bob": 1})
    store.delete_user(user_id="alice")

    def context(ctx: Any, s: Store, users: Any = None, progress: Any = None) -> TrainContext:
        return TrainContext(s, AdapterRegistry(s, base_model="fake"), FakeGenerator(), users=users)  # type: ignore[arg-type]

    monkeypatch.setattr("tailorlm.cli._training.train_context", context)
    result = _invoke("train", "retrain-stale")
    assert result.exit_code == 1
    assert "failed" in result.output and "no training examples" in result.output
    assert len(store.stale_artifacts()) == 1
