"""The adapter registry and the LRU adapter cache, without a model (weights are plain files here;
training and loading real adapters is covered in tests/train/test_lora.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tailorlm.adapters import AdapterCache, AdapterKey, AdapterRegistry
from tailorlm.data import Document, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    s.add([Document(user_id=u, doc_kind="review", text=f"{u} review", timestamp=1) for u in ("alice", "bob")])
    return s


def _save(reg: AdapterRegistry, key: AdapterKey, content: bytes) -> Path:
    folder = reg.folder_for(key)
    (folder / "adapter_model.safetensors").write_bytes(content)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_register_get_list_round_trip(store: Store) -> None:
    reg = AdapterRegistry(store, base_model="smol|path=/m")
    key = AdapterKey("lora", "user", "amazon:A1", "amazon-title")
    rec = reg.register(key, _save(reg, key, b"w1"), {"steps": 3, "loss_curve": [2.0, 1.0]})
    assert (rec.path / "meta.json").is_file()
    assert rec.path.is_relative_to(store.files_dir / "adapters")
    assert rec.meta["size_bytes"] == len(b"w1") + len(b"{}") and rec.final_loss == 1.0
    assert reg.get(key) == rec
    # a second registry on the same store sees it; another base model does not
    assert AdapterRegistry(store, base_model="smol|path=/m").get(key) == rec
    assert AdapterRegistry(store, base_model="other").get(key) is None
    glob = AdapterKey("lora", "global", "", "amazon-title")
    reg.register(glob, _save(reg, glob, b"g"), {})
    assert {r.key for r in reg.list()} == {key, glob}
    assert [r.key for r in reg.list(scope="global")] == [glob]
    assert [r.key for r in reg.list(owner="amazon:A1", task="amazon-title", method="lora")] == [key]
    assert reg.list(task="amazon-rating") == []


def test_retrained_adapter_gets_a_new_name_and_the_old_folder_goes(store: Store) -> None:
    reg = AdapterRegistry(store, base_model="m")
    key = AdapterKey("lora", "user", "alice", "amazon-title")
    first = reg.register(key, _save(reg, key, b"v1"), {})
    second = reg.register(key, _save(reg, key, b"v2"), {})
    assert first.name != second.name and first.name.startswith("lora-user-")
    assert not first.path.exists() and second.path.exists()
    assert reg.get(key) == second and len(reg.list()) == 1
    # same key, same content -> same name; other key, same content -> other name
    third = reg.register(key, _save(reg, key, b"v2"), {})
    assert third.name == second.name
    other = AdapterKey("lora", "user", "bob", "amazon-title")
    assert reg.register(other, _save(reg, other, b"v2"), {}).name != second.name


def test_delete_and_delete_user_remove_only_their_files(store: Store) -> None:
    reg = AdapterRegistry(store, base_model="m")
    keys = {u: AdapterKey("lora", "user", u, "amazon-title") for u in ("alice", "bob")}
    recs = {u: reg.register(k, _save(reg, k, u.encode()), {}) for u, k in keys.items()}
    glob = AdapterKey("lora", "global", "", "amazon-title")
    grec = reg.register(glob, _save(reg, glob, b"g"), {})
    report = store.delete_user(user_id="alice")
    assert str(recs["alice"].path) in report.files and not recs["alice"].path.exists()
    assert recs["bob"].path.exists() and grec.path.exists()
    assert reg.get(keys["alice"]) is None and reg.get(keys["bob"]) == recs["bob"]
    assert reg.delete(glob) is True and not grec.path.exists() and reg.delete(glob) is False


def test_bad_keys_and_folders_are_refused_clearly(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="owner must be '' for scope 'global'"):
        AdapterKey("lora", "global", "alice", "t")
    with pytest.raises(ValueError, match="owner is required for scope 'user'"):
        AdapterKey("lora", "user", "", "t")
    with pytest.raises(ValueError, match="scope must be one of"):
        AdapterKey("lora", "team", "x", "t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task must be a non-empty"):
        AdapterKey("lora", "user", "x", "")
    reg = AdapterRegistry(store, base_model="m")
    key = AdapterKey("lora", "user", "alice", "t")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reg.register(key, tmp_path / "nope", {})
    with pytest.raises(FileNotFoundError, match="no weight files"):
        reg.register(key, reg.folder_for(key), {})
    with pytest.raises(ValueError, match="model_fingerprint"):
        AdapterRegistry(store, base_model="")


class _Loader:
    """The generator's adapter surface (add/delete/list), recording calls; no model needed for LRU logic."""

    def __init__(self) -> None:
        self.adapters: list[str] = []

    def add_adapter(self, name: str, path: Path) -> None:
        assert (Path(path) / "adapter_config.json").is_file()
        self.adapters.append(name)

    def delete_adapter(self, name: str) -> None:
        self.adapters.remove(name)


def test_cache_loads_once_and_evicts_least_recently_used(store: Store) -> None:
    reg = AdapterRegistry(store, base_model="m")
    recs = []
    for u in ("a", "b", "c"):
        key = AdapterKey("lora", "user", u, "t")
        recs.append(reg.register(key, _save(reg, key, u.encode()), {}))
    gen = _Loader()
    cache = AdapterCache(gen, reg, capacity=2)
    assert cache.ensure(recs[0]) == recs[0].name
    cache.ensure(recs[1])
    cache.ensure(recs[0])  # a is now most recent
    assert cache.loads == 2 and cache.evictions == 0
    cache.ensure(recs[2])  # evicts b
    assert gen.adapters == [recs[0].name, recs[2].name] and cache.evictions == 1
    assert cache.loaded == [recs[0].name, recs[2].name]
    assert cache.discard(lambda r: r.key.owner == "a") == [recs[0].name] and gen.adapters == [recs[2].name]
    cache.unload_all()
    assert gen.adapters == [] and cache.loaded == []
    with pytest.raises(ValueError, match="capacity"):
        AdapterCache(gen, reg, capacity=0)


def test_adapters_are_keyed_by_model_not_precision_and_legacy_records_are_found(store: Store) -> None:
    import hashlib
    import json

    from tailorlm.data import Artifact

    fp32, bf16 = "smol|path=/m|dtype=float32|url=x", "smol|path=/m|dtype=bfloat16|url=x"
    reg32, reg16 = AdapterRegistry(store, base_model=fp32), AdapterRegistry(store, base_model=bf16)
    key = AdapterKey("lora", "user", "alice", "chat")
    rec = reg32.register(key, _save(reg32, key, b"w"), {})
    assert reg16.get(key) == rec  # trained in fp32, served on a bf16 copy of the weights
    assert AdapterRegistry(store, base_model="smol|path=/other|dtype=float32|url=x").get(key) is None

    # a record written before keys left the dtype out: the full fp32 fingerprint in key and model
    legacy_key = AdapterKey("lora", "user", "bob", "chat")
    folder = _save(reg32, legacy_key, b"old")
    payload = {"key": {"method": "lora", "scope": "user", "owner": "bob", "task": "chat", "variant": "default"},
               "name": "old-name", "base_model": fp32, "meta": {}}  # fmt: skip
    sha = hashlib.sha256(fp32.encode()).hexdigest()[:12]
    store.put_artifact(Artifact(scope="user", owner="bob", kind="adapter", key=f"lora|chat|default|{sha}",
                                payload=json.loads(json.dumps(payload)), path=str(folder), model=fp32))  # fmt: skip
    assert reg16.get(legacy_key).name == "old-name"
    assert {r.key for r in reg16.list(scope="user")} == {key, legacy_key}
    new = reg16.register(legacy_key, _save(reg16, legacy_key, b"new"), {})
    assert reg32.get(legacy_key) == new and not folder.exists()  # the new record replaced the legacy one
    assert [r.name for r in reg32.list(owner="bob")] == [new.name]
    assert reg32.delete(legacy_key) and reg16.get(legacy_key) is None


def test_the_digest_ignores_the_order_peft_writes_its_module_set_in(tmp_path: Path) -> None:
    """PEFT writes ``target_modules`` (a set) in string-hash order, which differs between processes."""
    from tailorlm.adapters.registry import _weights_digest

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, modules in ((a, ["q_proj", "v_proj"]), (b, ["v_proj", "q_proj"])):
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": modules}))
        (folder / "adapter_model.safetensors").write_bytes(b"same weights")
    assert _weights_digest(a) == _weights_digest(b)
    (b / "adapter_model.safetensors").write_bytes(b"other weights")
    assert _weights_digest(a)[0] != _weights_digest(b)[0]
