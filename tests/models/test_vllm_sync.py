"""VLLMAdapterGenerator against a fake vLLM server over real HTTP (tailorlm.testing.FakeVLLM).

The fake refuses a chat for an adapter it does not hold, as vLLM does, so every answer
below proves the adapter was loaded on the server before the request that used it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tailorlm.adapters import AdapterCache, AdapterKey, AdapterRecord
from tailorlm.models import (
    BackendError,
    GenerationConfig,
    Messages,
    OpenAICompatibleGenerator,
    VLLMAdapterGenerator,
    build_generator,
    chat,
)
from tailorlm.models.base import AdapterHost, RemoteAdapterHost, adapter_fingerprint, model_fingerprint
from tailorlm.settings import load_settings
from tailorlm.testing import FakeGenerator, FakeVLLM, fake_vllm_server, openai_test_server

Q = [{"role": "user", "content": "Name three colors."}]
BASE = "base-model"


def _adapter(root: Path, name: str) -> Path:
    """A folder shaped like a PEFT adapter (the fake server only checks it is readable)."""
    folder = root / "adapters" / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 2}')
    (folder / "adapter_model.safetensors").write_bytes(b"weights of " + name.encode())
    return folder


@pytest.fixture
def fake() -> FakeVLLM:
    return FakeVLLM(FakeGenerator(name=BASE))


@pytest.fixture
def url(fake: FakeVLLM) -> Iterator[str]:
    with fake_vllm_server(fake) as u:
        yield u


def _gen(url: str, tmp_path: Path, *names: str, **kw: Any) -> VLLMAdapterGenerator:
    gen = VLLMAdapterGenerator(url, model=BASE, adapter_root=tmp_path / "adapters", **kw)
    for name in names:
        gen.add_adapter(name, _adapter(tmp_path, name))
    return gen


def _routes(fake: FakeVLLM) -> list[tuple[str, str]]:
    return [(r, b.get("lora_name") or b.get("model") or "") for r, b in fake.calls if r != "models"]


def test_first_use_loads_then_generates_with_the_lora_name(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "lora-a") as gen:
        assert isinstance(gen, AdapterHost) and gen.adapters == ["lora-a"]
        assert fake.calls == []  # registering sends nothing
        assert chat(gen, Q, adapter="lora-a") == "[lora-a] echo: Name three colors."
        assert chat(gen, Q) == "echo: Name three colors."  # a base row uses the base model's name
    assert _routes(fake) == [("load", "lora-a"), ("chat", "lora-a"), ("chat", BASE)]
    load = next(b for r, b in fake.calls if r == "load")
    assert load == {"lora_name": "lora-a", "lora_path": str((tmp_path / "adapters" / "lora-a").resolve())}
    assert gen.sync.loads == 1 and gen.sync.loaded == ["lora-a"]


def test_second_use_does_not_reload(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "a") as gen:
        gen.generate([Q, Q], adapter=["a", None])
        gen.generate([Q], adapter="a")
    assert fake.count("load") == 1 and fake.count("chat", "a") == 2 and fake.count("chat", BASE) == 1


def test_least_recently_used_is_unloaded_beyond_the_maximum(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "a", "b", "c", max_server_adapters=2) as gen:
        for name in ("a", "b", "a", "c"):  # b is now the least recently used, not a
            assert chat(gen, Q, adapter=name).startswith(f"[{name}]")
        assert sorted(fake.loaded) == ["a", "c"] and gen.sync.loaded == ["a", "c"]
        assert chat(gen, Q, adapter="b").startswith("[b]")  # loaded again; a goes now
        assert sorted(fake.loaded) == ["b", "c"]
    assert [n for r, n in _routes(fake) if r == "unload"] == ["b", "a"]
    assert fake.count("load", "b") == 2 and gen.sync.unloads == 2


def test_concurrent_first_uses_load_once_and_different_adapters_load_in_parallel(
    fake: FakeVLLM, url: str, tmp_path: Path
) -> None:
    fake.load_delay_s = 0.3
    with _gen(url, tmp_path, "a", "b", "c", "d", max_concurrency=8) as gen:
        answers = gen.generate([Q] * 8, adapter="a")
        assert answers == ["[a] echo: Name three colors."] * 8
        assert fake.count("load", "a") == 1 and fake.count("chat", "a") == 8
        fake.max_loading = 0
        gen.generate([Q] * 4, adapter=["b", "c", "d", "b"])
    assert fake.count("load") == 4  # b once, though two rows asked for it at once
    assert fake.max_loading >= 2  # loads of different adapters overlapped


def test_server_restart_reloads_and_retries_once(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "a") as gen:
        chat(gen, Q, adapter="a")
        fake.restart()  # vLLM forgets runtime-loaded adapters; tailorlm still thinks it is loaded
        assert chat(gen, Q, adapter="a") == "[a] echo: Name three colors."
    assert _routes(fake) == [("load", "a"), ("chat", "a"), ("chat", "a"), ("load", "a"), ("chat", "a")]


def test_a_server_that_keeps_forgetting_is_retried_only_once(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    fake.forget_loads = True
    with _gen(url, tmp_path, "a") as gen, pytest.raises(BackendError, match=r"404.*`a` does not exist") as info:
        chat(gen, Q, adapter="a")
    assert info.value.status_code == 404
    assert fake.count("load", "a") == 2 and fake.count("chat", "a") == 2


class _Blocking(FakeGenerator):
    """Holds every answer for adapter ``a`` until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(name=BASE)
        self.started, self.release = threading.Event(), threading.Event()

    def generate(self, batch: Sequence[Messages], **kw: Any) -> list[str]:
        if kw.get("adapter") == "a":
            self.started.set()
            assert self.release.wait(10)
        return super().generate(batch, **kw)


def test_an_adapter_in_use_is_not_evicted(tmp_path: Path) -> None:
    blocking = _Blocking()
    fake = FakeVLLM(blocking)
    with fake_vllm_server(fake) as url, _gen(url, tmp_path, "a", "b", max_server_adapters=1) as gen:
        result: list[str] = []
        worker = threading.Thread(target=lambda: result.append(chat(gen, Q, adapter="a")))
        worker.start()
        assert blocking.started.wait(10)
        assert chat(gen, Q, adapter="b").startswith("[b]")  # over the maximum while a is in use
        assert fake.count("unload", "a") == 0 and "a" in fake.loaded
        assert fake.count("unload", "b") == 1  # the idle one went instead
        blocking.release.set()
        worker.join(10)
    assert result == ["[a] echo: Name three colors."]
    assert list(fake.loaded) == ["a"] and gen.sync.loaded == ["a"]


def test_already_loaded_on_the_server_is_success(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "a") as gen:
        gen.sync.reconcile()  # tailorlm has looked at the server: nothing there yet
        fake.loaded["a"] = gen.sync.server_path(tmp_path / "adapters" / "a")  # another client loads it
        assert chat(gen, Q, adapter="a").startswith("[a]")
    assert fake.count("load", "a") == 1  # answered 400 "already been loaded", taken as loaded
    assert gen.sync.loads == 0 and gen.sync.loaded == ["a"]


def test_adapters_on_the_server_at_start_are_adopted(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    old = _adapter(tmp_path, "old")  # loaded by a previous tailorlm process
    fake.loaded = {"old": str(old.resolve()), "sql": "/models/sql-lora"}  # and one from --lora-modules
    with _gen(url, tmp_path, "b", max_server_adapters=1) as gen:
        gen.add_adapter("old", old)
        assert chat(gen, Q, adapter="old").startswith("[old]")
        assert fake.count("load") == 0  # reconciled with GET /v1/models: nothing to load
        assert chat(gen, Q, adapter="sql").startswith("[sql]")  # not registered: passed on as is
        assert chat(gen, Q, adapter="b").startswith("[b]")
    assert _routes(fake)[-3:] == [("load", "b"), ("unload", "old"), ("chat", "b")]
    assert sorted(fake.loaded) == ["b", "sql"]  # a server-side adapter that is not ours stays


def test_a_failing_load_is_a_clear_error_and_no_request_is_sent(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    fake.fail_load["a"] = (400, "LoRA rank 64 is greater than max_lora_rank 16.")
    fake.load_delay_s = 0.2
    with _gen(url, tmp_path, "a", max_concurrency=4) as gen:
        with pytest.raises(BackendError, match=r"could not load adapter 'a' from .*HTTP 400: LoRA rank 64") as info:
            gen.generate([Q] * 4, adapter="a")
        assert info.value.status_code == 400
        assert fake.count("load", "a") == 1  # the concurrent uses shared the one failure
        assert fake.count("chat") == 0 and gen.sync.loaded == []
        del fake.fail_load["a"]
        assert chat(gen, Q, adapter="a").startswith("[a]")  # not remembered as broken


def test_a_folder_the_server_cannot_read_names_the_path_mapping(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    fake.mounts = {"/srv/tailorlm": str(tmp_path / "elsewhere")}  # the server reads only its mount
    with _gen(url, tmp_path, "a") as gen, pytest.raises(BackendError, match=r"404.*No adapter found.*adapter_path_map"):
        chat(gen, Q, adapter="a")


def test_path_map_sends_the_servers_view_of_the_folder(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    fake.mounts = {"/srv/tailorlm": str(tmp_path)}
    with _gen(url, tmp_path, "a", adapter_path_map={str(tmp_path): "/srv/tailorlm"}) as gen:
        assert chat(gen, Q, adapter="a").startswith("[a]")
    assert fake.loaded == {"a": "/srv/tailorlm/adapters/a"}


def test_a_server_without_runtime_lora_routes_says_how_to_start_vllm(tmp_path: Path) -> None:
    with (
        openai_test_server(FakeGenerator(name=BASE)) as url,
        _gen(url, tmp_path, "a") as gen,
        pytest.raises(BackendError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"),
    ):
        chat(gen, Q, adapter="a")


def test_delete_adapter_unloads_it_once_idle(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "a") as gen:
        chat(gen, Q, adapter="a")
        gen.delete_adapter("a")
        assert gen.adapters == [] and fake.loaded == {}
        with pytest.raises(ValueError, match="unknown adapter"):
            gen.delete_adapter("a")


def test_names_must_be_valid_and_versions_need_new_names(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "a") as gen:
        for bad in ("has space", "a/b", BASE, "__base__", ""):
            with pytest.raises(ValueError, match="not valid"):
                gen.add_adapter(bad, tmp_path / "adapters" / "a")
        with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
            gen.add_adapter("x", tmp_path)
        chat(gen, Q, adapter="a")
        with pytest.raises(ValueError, match="needs a new name"):
            gen.add_adapter("a", _adapter(tmp_path, "a2"))  # other weights under a loaded name
        gen.add_adapter("a", tmp_path / "adapters" / "a")  # the same folder again: fine


def test_the_adapter_cache_drives_it_like_the_local_backend(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    """The path the lora method takes: the registry's record -> AdapterCache.ensure -> generate."""
    record = AdapterRecord(
        key=AdapterKey("lora", "user", "u1", "amazon-title"),
        path=_adapter(tmp_path, "lora-user-1a2b3c4d-5e6f7a8b"),
        name="lora-user-1a2b3c4d-5e6f7a8b",
        base_model=BASE,
    )
    with _gen(url, tmp_path) as gen:
        cache = AdapterCache(gen, capacity=4)
        name = cache.ensure(record)
        assert gen.adapters == [name] and fake.count("load") == 0  # loaded on first use, not before
        assert chat(gen, Q, adapter=name).startswith(f"[{name}]")
        cache.unload_all()
    assert fake.loaded == {}


def test_settings_select_the_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TAILORLM_GENERATOR__ADAPTER_PATH_MAP", '{"/home/me/files": "/data/files"}')
    settings = load_settings(
        cache_dir=tmp_path,
        generator={
            "backend": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "model": BASE,
            "adapter_sync": "vllm",
            "max_server_adapters": 3,
        },
    )
    assert settings.generator.adapter_path_map == {"/home/me/files": "/data/files"}
    gen = build_generator(settings)
    assert isinstance(gen, VLLMAdapterGenerator) and gen.sync.max_adapters == 3
    assert gen.sync.server_path("/home/me/files/adapters/x") == "/data/files/adapters/x"
    gen.close()
    plain = build_generator(load_settings(generator={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}))
    assert type(plain) is OpenAICompatibleGenerator and not isinstance(plain, AdapterHost)  # "none": names only
    plain.close()


def test_a_base_only_batch_never_touches_the_adapter_routes(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    with _gen(url, tmp_path, "a") as gen:
        assert gen.generate([Q, Q], config=GenerationConfig(max_new_tokens=2)) == ["echo: Name"] * 2
    assert [r for r, _ in fake.calls] == ["chat", "chat"]


def test_load_adapter_loads_now_so_a_failure_shows_before_any_request(fake: FakeVLLM, url: str, tmp_path: Path) -> None:
    """What the lora method calls to fall back to another scope when a load fails."""
    fake.fail_load["bad"] = (400, "LoRA rank 64 is greater than max_lora_rank 16.")
    with _gen(url, tmp_path, "a", "bad") as gen:
        assert isinstance(gen, RemoteAdapterHost)
        gen.load_adapter("a")
        gen.load_adapter("a")  # already there: no second load
        assert fake.loaded.keys() == {"a"} and gen.sync.loaded == ["a"]
        with pytest.raises(BackendError, match=r"could not load adapter 'bad'.*max_lora_rank 16"):
            gen.load_adapter("bad")
        gen.load_adapter("sql")  # not ours to load (e.g. --lora-modules): left to the server
        assert chat(gen, Q, adapter="a").startswith("[a]")
    assert _routes(fake) == [("load", "a"), ("load", "bad"), ("chat", "a")]


def test_settings_name_the_local_model_whose_adapters_are_served(tmp_path: Path) -> None:
    settings = load_settings(
        cache_dir=tmp_path,
        generator={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": BASE, "adapter_sync": "vllm"},
    )
    with build_generator(settings) as plain:
        assert plain.adapter_base is None and adapter_fingerprint(plain) == model_fingerprint(plain)
    settings.generator.adapter_base, settings.generator.dtype = "smollm2", "float32"
    with build_generator(settings) as gen:
        local = f"smollm2-135m-instruct|path={tmp_path / 'models' / 'smollm2-135m-instruct'}|dtype=float32"
        assert gen.adapter_base == local and adapter_fingerprint(gen) == local
        assert model_fingerprint(gen) == f"{BASE}|base_url=http://127.0.0.1:9/v1"
