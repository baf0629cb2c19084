"""The lora method over vLLM (``adapter_sync = "vllm"``), against tailorlm.testing.FakeVLLM.

Adapters are registered as ``tailorlm train`` files them: under the *local* model's
fingerprint. ``generator.adapter_base`` makes the HTTP generator look them up there, and a
user adapter the server fails to load falls back to the next scope (user -> persona ->
global) with a warning, or is a clear error when nothing is left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailorlm.adapters import AdapterKey, AdapterRecord, AdapterRegistry
from tailorlm.data import Document, Store
from tailorlm.errors import BackendError, ConfigError, NoAdapterError
from tailorlm.models import VLLMAdapterGenerator, build_generator, local_fingerprint
from tailorlm.models._packaged import SMOLLM2_NAME
from tailorlm.models.base import adapter_fingerprint, model_fingerprint
from tailorlm.models.inputs import generate_inputs
from tailorlm.personalize import Query, parse_method_spec
from tailorlm.settings import load_settings
from tailorlm.testing import FakeGenerator, FakeVLLM, fake_vllm_server

TASK = "amazon-title"
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the name the (fake) vLLM server serves
Q = Query("These worked well on my guitar, number 2.", task=TASK, timestamp=102)


@pytest.fixture
def fake() -> FakeVLLM:
    return FakeVLLM(FakeGenerator(name=BASE))


@pytest.fixture
def url(fake: FakeVLLM) -> Iterator[str]:
    with fake_vllm_server(fake) as u:
        yield u


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    s.add(
        [
            Document(user_id="u", doc_kind="review", text=f"Review {i}.", title=f"Title {i}", timestamp=100 + i)
            for i in range(2)
        ]
    )
    return s


def _generator(url: str, cache_dir: Path, **extra: str) -> VLLMAdapterGenerator:
    """What ``build_generator`` makes of the README's settings."""
    gen = {"backend": "openai", "base_url": url, "model": BASE, "adapter_sync": "vllm", **extra}
    built = build_generator(load_settings(cache_dir=cache_dir, generator=gen))
    assert isinstance(built, VLLMAdapterGenerator)
    return built


def _register(store: Store, key: AdapterKey, cache_dir: Path) -> AdapterRecord:
    """Register a PEFT-shaped folder for ``key`` under the local smollm2's fingerprint, as
    ``tailorlm train`` (a TransformersGenerator over ``cache_dir``) files it."""
    local = f"{SMOLLM2_NAME}|path={cache_dir / 'models' / SMOLLM2_NAME}|dtype=float32"  # model_fingerprint's form
    registry = AdapterRegistry(store, base_model=local)
    folder = registry.folder_for(key)
    (folder / "adapter_config.json").write_text('{"r": 4}')
    (folder / "adapter_model.safetensors").write_bytes(f"weights of {key}".encode())
    return registry.register(key, folder, {"steps": 1})


def test_lora_user_over_vllm_finds_the_locally_trained_adapter(
    fake: FakeVLLM, url: str, store: Store, tmp_path: Path
) -> None:
    rec = _register(store, AdapterKey("lora", "user", "u", TASK), tmp_path)
    with _generator(url, tmp_path, adapter_base="smollm2") as gen:
        assert model_fingerprint(gen) == f"{BASE}|base_url={url}"  # output caches still key on the server
        assert AdapterRegistry(store, base_model=adapter_fingerprint(gen)).base_model == rec.base_model
        method = parse_method_spec("lora-user", collaborators={"generator": gen}).fit(store)
        out = method.personalize("u", Q)
        assert out.adapter == rec.name and out.record.scope == "user" and out.record.adapter == rec.name
        (answer,) = generate_inputs(gen, [out])
    assert answer.startswith(f"[{rec.name}] ")
    assert fake.loaded == {rec.name: str(rec.path)}  # the registry's folder, loaded into the server
    assert [(r, b.get("lora_name") or b.get("model")) for r, b in fake.calls if r != "models"] == [
        ("load", rec.name),
        ("chat", rec.name),
    ]


def test_without_adapter_base_the_error_says_which_setting_to_use(url: str, store: Store, tmp_path: Path) -> None:
    _register(store, AdapterKey("lora", "user", "u", TASK), tmp_path)
    with _generator(url, tmp_path) as gen:
        method = parse_method_spec("lora-user", collaborators={"generator": gen}).fit(store)
        with pytest.raises(NoAdapterError, match=r"base_url=.*set generator\.adapter_base"):
            method.personalize("u", Q)


def test_adapter_base_is_the_local_generators_fingerprint_or_a_given_one(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    assert local_fingerprint(str(folder), cache_dir=tmp_path, dtype="float32") == (
        f"my-model|path={folder}|dtype=float32"
    )
    with _generator("http://127.0.0.1:9/v1", tmp_path, adapter_base="custom|path=/x") as gen:
        assert adapter_fingerprint(gen) == "custom|path=/x"  # a fingerprint is taken as is
    settings = load_settings(
        cache_dir=tmp_path, generator={"backend": "openai", "base_url": "http://x/v1", "adapter_base": "smollm2"}
    )
    with pytest.raises(ConfigError, match="adapter_base needs adapter_sync = 'vllm'"):
        build_generator(settings)


def test_a_user_adapter_that_fails_to_load_falls_back_to_the_global_one(
    fake: FakeVLLM, url: str, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user = _register(store, AdapterKey("lora", "user", "u", TASK), tmp_path)
    glob = _register(store, AdapterKey("lora", "global", "", TASK), tmp_path)
    fake.fail_load[user.name] = (400, "LoRA rank 64 is greater than max_lora_rank 16.")
    with _generator(url, tmp_path, adapter_base="smollm2") as gen:
        method = parse_method_spec("lora", collaborators={"generator": gen}).fit(store)
        with caplog.at_level(logging.WARNING, logger="tailorlm.personalize.lora.method"):
            out = method.personalize("u", Q)
        assert out.adapter == glob.name and out.record.scope == "global" and out.record.adapter == glob.name
        (answer,) = generate_inputs(gen, [out])
        assert answer.startswith(f"[{glob.name}] ")
        warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        assert f"user adapter {user.name} failed to load" in warning and "max_lora_rank 16" in warning
        del fake.fail_load[user.name]  # the server is fixed: the user adapter serves again
        assert method.personalize("u", Q).record.scope == "user"
    assert fake.count("load", user.name) == 2 and fake.count("chat", user.name) == 0


def test_when_nothing_can_be_loaded_the_error_lists_every_failure(
    fake: FakeVLLM, url: str, store: Store, tmp_path: Path
) -> None:
    user = _register(store, AdapterKey("lora", "user", "u", TASK), tmp_path)
    glob = _register(store, AdapterKey("lora", "global", "", TASK), tmp_path)
    fake.fail_load[user.name] = (400, "LoRA rank 64 is greater than max_lora_rank 16.")
    fake.fail_load[glob.name] = (500, "out of memory")
    with _generator(url, tmp_path, adapter_base="smollm2") as gen:
        auto = parse_method_spec("lora", collaborators={"generator": gen}).fit(store)
        with pytest.raises(
            BackendError, match=rf"could be loaded.*user adapter {user.name}.*global adapter {glob.name}"
        ):
            auto.personalize("u", Q)
        only_user = parse_method_spec("lora-user", collaborators={"generator": gen}).fit(store)
        with pytest.raises(BackendError, match=r"nothing left to fall back to.*max_lora_rank 16"):
            only_user.personalize("u", Q)  # a fixed scope has no fallback
    assert fake.count("chat") == 0 and fake.loaded == {}
