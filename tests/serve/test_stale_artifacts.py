"""Unlearning over HTTP: DELETE lists the shared artifacts that learned from the user, and
``[serve] refuse_stale_artifacts`` answers the documented 503 (code ``stale_artifact``)
for a request that would use one, until it is rebuilt.

The adapters are registered directly (weights are plain files; the fake model only tags
its answer with the adapter's name), with manifests naming the users who trained them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serve_harness import Live, live_server

from tailorlm.adapters import AdapterKey, AdapterRecord, AdapterRegistry
from tailorlm.data import TrainingManifest
from tailorlm.models.base import model_fingerprint

ASK = [{"role": "user", "content": "Which guitar strings suit me?"}]
CHAT = {"model": "tailorlm/lora-global", "user": "bob", "messages": ASK}
GLOBAL = AdapterKey("lora", "global", "", "chat")


def _register(live: Live, key: AdapterKey, users: dict[str, int], content: bytes, **kw: Any) -> AdapterRecord:
    registry = AdapterRegistry(live.store, base_model=model_fingerprint(live.generator))
    folder = registry.folder_for(key)
    (folder / "adapter_model.safetensors").write_bytes(content)
    manifest = TrainingManifest(users=users, task=key.task, options={"builder": "train"}, **kw)
    return registry.register(key, folder, {"steps": 1}, manifest=manifest)


def _answer(response: Any) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.fixture
def refusing(tmp_path: Path) -> Any:
    with live_server(tmp_path / "refusing", memory=False, refuse_stale_artifacts=True) as server:
        yield server


def test_delete_lists_the_stale_artifacts_and_the_service_refuses_them_until_rebuilt(refusing: Live) -> None:
    glob = _register(refusing, GLOBAL, {"alice": 3, "bob": 2}, b"v1")
    with refusing.admin() as c:
        first = c.post("/v1/chat/completions", json=CHAT)
        assert first.status_code == 200 and _answer(first).startswith(f"[{glob.name}]")
        r = c.delete("/v1/users/alice")
        assert r.status_code == 200
        (stale,) = r.json()["stale_artifacts"]
        assert stale["name"] == glob.name and stale["kind"] == "adapter" and stale["scope"] == "global"
        assert stale["owner"] == "" and stale["deleted_users"] == 1 and stale["stale_since"] > 0

        refused = c.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["code"] == "stale_artifact" and glob.name in error["message"]
        assert "tailorlm train retrain-stale" in error["message"]
        stream = c.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert stream.status_code == 503 and stream.json()["error"]["code"] == "stale_artifact"
        assert c.post("/v1/chat/completions", json={**CHAT, "model": "tailorlm/rag-bm25"}).status_code == 200

        rebuilt = _register(refusing, GLOBAL, {"bob": 2}, b"v2", excluded=1)  # what retrain-stale writes
        again = c.post("/v1/chat/completions", json=CHAT)
        assert again.status_code == 200 and _answer(again).startswith(f"[{rebuilt.name}]")


def test_by_default_a_stale_artifact_is_still_served(live: Live) -> None:
    with live.admin() as c:
        c.post("/v1/users", json={"user_id": "carol"})
        glob = _register(live, GLOBAL, {"carol": 1}, b"default")
        assert [a["name"] for a in c.delete("/v1/users/carol").json()["stale_artifacts"]] == [glob.name]
        r = c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200 and glob.name in r.json()["choices"][0]["message"]["content"]


def test_a_user_key_deleting_itself_never_learns_another_users_id(refusing: Live) -> None:
    glob = _register(refusing, GLOBAL, {"alice": 3, "bob": 2}, b"g")
    registry = AdapterRegistry(refusing.store, base_model=model_fingerprint(refusing.generator))
    parent = registry.ref(GLOBAL)
    assert parent is not None
    bobs = _register(refusing, AdapterKey("lora", "user", "bob", "chat"), {"bob": 2}, b"b", inherits=(parent,))
    with refusing.as_user("alice") as c:
        r = c.delete("/v1/users/alice")
    assert r.status_code == 200
    listed = {a["name"]: a for a in r.json()["stale_artifacts"]}
    assert set(listed) == {glob.name, bobs.name}
    assert listed[bobs.name]["scope"] == "user" and listed[bobs.name]["owner"] is None
    assert "bob" not in r.text
    with refusing.as_user("bob") as c:  # bob's own adapter learned from alice through the global one
        refused = c.post("/v1/chat/completions", json={**CHAT, "model": "tailorlm/lora-user"})
    assert refused.status_code == 503 and bobs.name in refused.json()["error"]["message"]


def test_the_spec_documents_the_refusal_and_the_deletion_field(live: Live) -> None:
    spec = live.app.openapi()
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "stale_artifact" in chat["503"]["description"] and "retrain-stale" in chat["503"]["description"]
    deleted = spec["components"]["schemas"]["DeletionResult"]
    assert "stale_artifacts" in deleted["properties"] and "stale_artifacts" not in deleted.get("required", [])
    assert "StaleArtifactInfo" in spec["components"]["schemas"]
