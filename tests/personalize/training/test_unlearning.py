"""Issue 16 item 6 on the real SmolLM2: delete a user whose data trained the global adapter.

A global LoRA adapter (tiny: r=4, one step) learns from alice, bob and carol, and bob's
own adapter starts from it. Deleting alice lists and marks both stale with her recorded
(as her keyed hash); ``tailorlm train retrain-stale`` (through Typer's runner, the base
model being the session's) rebuilds the global adapter without her, then bob's from the
new one; the new manifests lack alice, the marks are cleared and the adapters still load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tailorlm import Store, load_settings
from tailorlm.adapters import AdapterKey, AdapterRegistry
from tailorlm.cli import app
from tailorlm.data import Document, TaskExample
from tailorlm.models.base import GenerationConfig, model_fingerprint
from tailorlm.personalize.registry import get_trainer
from tailorlm.personalize.training.jobs import TrainContext, TrainJob

pytestmark = pytest.mark.model

TASK = "amazon-title"
TINY = {"r": 4, "dropout": 0.0, "max_length": 64, "batch_size": 2, "steps": 1, "lr": 5e-3}
TITLES = {
    "alice": ["Bright crisp strings", "Bright punchy picks", "Bright clear cable"],
    "bob": ["Solid stand", "Solid strap", "Solid case"],
    "carol": ["Warm tone", "Warm mute"],
}
runner = CliRunner()


def _records() -> list:
    recs: list = []
    for u, titles in TITLES.items():
        for i, title in enumerate(titles):
            text = f"These worked well on my guitar, number {i}."
            recs.append(Document(user_id=u, doc_kind="review", text=text, title=title, timestamp=100 + i))
            ex = TaskExample(task=TASK, example_id=f"{u}{i}", user_id=u, input=text, target=title, timestamp=100 + i)
            recs.append(ex)
    return recs


@pytest.fixture
def cli_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm: Any) -> Store:
    """The store the CLI opens, and ``train_context`` pointed at the session's model (none loaded here)."""
    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TAILORLM_STORE_URL", raising=False)

    def context(ctx: Any, store: Store, users: Any = None, progress: Any = None) -> TrainContext:
        registry = AdapterRegistry(store, base_model=model_fingerprint(smollm))
        return TrainContext(store, registry, smollm, users=users, progress=progress)

    monkeypatch.setattr("tailorlm.cli._training.train_context", context)
    monkeypatch.setattr("tailorlm.cli.train.console", Console(width=400))  # tables unwrapped
    store = Store.from_settings(load_settings())
    store.add(_records())
    return store


def _cli(*args: str) -> Any:
    return runner.invoke(app, ["train", *args], catch_exceptions=False)


def test_deleting_a_user_who_trained_the_global_adapter_then_retrain_stale(smollm: Any, cli_store: Store) -> None:
    store = cli_store
    registry = AdapterRegistry(store, base_model=model_fingerprint(smollm))
    ctx = TrainContext(store, registry, smollm, users=sorted(TITLES))
    train = get_trainer("lora")
    glob = train(TrainJob("lora", "global", "", TASK, TINY), ctx)
    bob = train(TrainJob("lora", "user", "bob", TASK, {**TINY, "init_from": "global"}), ctx)
    glob_ref, bob_ref = registry.ref(glob.key), registry.ref(bob.key)
    subjects = store.subjects_of(TITLES)

    # The manifest: every population user with their rows (no ids in clear), and the job.
    assert glob.manifest is not None and glob.manifest["users"] == 3 and glob.manifest["examples"] == 8
    job = {"method": "lora", "scope": "global", "owner": "", "task": TASK, "config": TINY}
    assert glob.manifest["options"]["job"] == job
    assert "alice" not in str(glob.manifest) and "alice" not in str(store.get_artifact(**glob_ref.to_dict()))
    assert store.provenance(glob_ref).users == {subjects[u]: len(TITLES[u]) for u in TITLES}
    assert bob.manifest is not None and bob.manifest["inherits"] == [glob_ref.to_dict()]
    assert store.provenance(bob_ref).includes(subjects["alice"])  # learned through its initialization
    assert "user(s)" in _cli("list").output and "STALE" not in _cli("list").output

    report = store.delete_user(user_id="alice")

    assert {a.ref for a in report.stale} == {glob_ref, bob_ref}
    assert {a.name for a in report.stale} == {glob.name, bob.name}
    for mark in store.stale_artifacts():
        assert mark.deleted_subjects == (subjects["alice"],) and mark.stale_since > 0
    listed = _cli("list").output
    assert "STALE" in listed and "retrain-stale" in listed

    dry = _cli("retrain-stale", "--dry-run")
    assert dry.exit_code == 0 and "retrain" in dry.output
    assert len(store.stale_artifacts()) == 2  # a dry run changes nothing

    result = _cli("retrain-stale")
    assert result.exit_code == 0, result.output
    assert "retrained" in result.output

    assert store.stale_artifacts() == []
    new_glob, new_bob = registry.get(glob.key), registry.get(bob.key)
    assert new_glob is not None and new_bob is not None
    assert new_glob.name != glob.name and not glob.path.exists()
    prov = store.provenance(registry.ref(new_glob.key))  # type: ignore[arg-type]
    assert not prov.stale and not prov.includes(subjects["alice"]) and subjects["alice"] not in prov.users
    assert prov.users == {subjects["bob"]: 3, subjects["carol"]: 2}
    assert new_glob.manifest is not None
    assert new_glob.manifest["options"]["job"]["config"] == TINY  # the same options
    assert new_glob.manifest["excluded"] == 1 and new_glob.manifest["options"]["rebuild"]["of"] == glob.name
    assert new_glob.meta["examples"] == 5
    # bob's adapter was rebuilt after, from the new global adapter
    assert new_bob.meta["init_from"] == new_glob.name
    assert not store.provenance(registry.ref(new_bob.key)).stale  # type: ignore[arg-type]
    assert "STALE" not in _cli("list").output

    conv = [{"role": "user", "content": "Write a title for: These worked well on my guitar."}]
    try:
        smollm.add_adapter(new_glob.name, new_glob.path)
        (text,) = smollm.generate([conv], config=GenerationConfig(max_new_tokens=4), adapter=new_glob.name)
        assert isinstance(text, str)
    finally:
        if new_glob.name in smollm.adapters:
            smollm.delete_adapter(new_glob.name)
    assert _cli("retrain-stale").output.startswith("no stale artifacts")


def test_a_rebuild_never_registers_an_adapter_that_learned_from_an_excluded_user(smollm: Any, cli_store: Store) -> None:
    """The trainers' last guard: a user of ``ctx.exclude`` who is still in the population is refused."""
    registry = AdapterRegistry(cli_store, base_model=model_fingerprint(smollm))
    ctx = TrainContext(cli_store, registry, smollm, users=sorted(TITLES), exclude=frozenset({"carol"}))
    assert "carol" not in ctx.population()
    rec = get_trainer("lora")(TrainJob("lora", "global", "", TASK, TINY), ctx)
    assert not cli_store.provenance(registry.ref(rec.key)).includes(cli_store.subjects_of(["carol"])["carol"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="excluded user"):
        get_trainer("lora")(TrainJob("lora", "user", "carol", TASK, TINY), ctx)
    assert registry.get(AdapterKey("lora", "user", "carol", TASK)) is None
