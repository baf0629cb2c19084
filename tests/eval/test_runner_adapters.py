"""The runner with a parametric method: more users than the adapter LRU holds.

A row personalizes and predicts a chunk at a time, so every user's adapter is still
loaded when their query is answered, however many users the row has; each answer must
come from the user's own adapter.
"""

from __future__ import annotations

from pathlib import Path

from tailorlm.adapters import AdapterKey, AdapterRegistry
from tailorlm.data import Store
from tailorlm.eval import run_method
from tailorlm.models.base import model_fingerprint
from tailorlm.testing import FakeGenerator


class LoadingGenerator(FakeGenerator):
    """A fake model that, like the real one, only answers with adapters that are loaded."""

    def add_adapter(self, name: str, path: str | Path) -> None:
        assert (Path(path) / "adapter_config.json").is_file()
        self.adapters.append(name)

    def delete_adapter(self, name: str) -> None:
        self.adapters.remove(name)


def test_a_row_with_more_users_than_the_adapter_cache_serves_each_users_own_adapter(title_store: Store) -> None:
    gen = LoadingGenerator(adapters=[])
    reg = AdapterRegistry(title_store, base_model=model_fingerprint(gen))
    names: dict[str, str] = {}
    for u in range(12):
        key = AdapterKey("lora", "user", f"u{u}", "amazon-title")
        folder = reg.folder_for(key)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_bytes(f"u{u}".encode())
        names[f"u{u}"] = reg.register(key, folder, {}).name

    result = run_method(
        title_store,
        method="lora",
        task="amazon-title",
        n_users=10,
        predictor="generate",
        generator=gen,
        overrides={"lora": {"scope": "user", "cache_capacity": 8}},
    )
    assert len(result.rows) == 10
    for row in result.rows:
        assert row["scope"] == "user"
        assert row["answer"].startswith(f"[{names[row['user_id']]}] ")  # the user's own adapter answered
    assert len(gen.adapters) <= 8  # the cache bound held: some adapters were evicted along the way
