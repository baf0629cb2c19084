"""One settings object for the whole toolkit.

Values come, lowest priority first, from the defaults below, a TOML config file
(``$TAILORLM_CONFIG`` or ``<config dir>/config.toml``), ``TAILORLM_*`` environment
variables (nested fields with ``__``, e.g. ``TAILORLM_GENERATOR__BACKEND=openai``)
and finally CLI flags, which the CLI passes as keyword overrides to :func:`load_settings`.

Paths are resolved when settings are loaded, never at import time, so tests can
point everything at ``tmp_path`` with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "EmbedderSettings",
    "GeneratorSettings",
    "ServeSettings",
    "Settings",
    "default_cache_dir",
    "load_settings",
]


def default_cache_dir() -> Path:
    """Where converted models, fetched datasets and the default store live."""
    env = os.environ.get("TAILORLM_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("tailorlm"))


class GeneratorSettings(BaseModel):
    """Which LLM backend answers chat messages."""

    backend: Literal["local", "openai"] = Field(
        "local", description="local transformers or an OpenAI-compatible HTTP server"
    )
    model: str = Field(
        "smollm2",
        description="'smollm2' (packaged default), a local HF model folder, or the remote model name",
    )
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key: str | None = Field(None, description="API key for the HTTP backend")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="local weights dtype; 'auto': bf16 where the CPU computes it natively "
        "(AVX512-BF16, AMX, ARM BF16), else fp32 (emulated bf16 is slower)",
    )
    gathered_lora: bool = Field(
        True,
        description="local model: the service's decode batch applies each row's plain LoRA adapter in two "
        "batched matmuls per layer; false: PEFT's loop over the batch's adapters (adapter_names)",
    )
    timeout_s: float = Field(120.0, description="HTTP request timeout")
    adapter_sync: Literal["none", "vllm"] = Field(
        "none",
        description="HTTP backend: 'vllm' loads a LoRA adapter into the server on first use "
        "(/v1/load_lora_adapter) and unloads the least recently used; 'none' only sends its name",
    )
    max_server_adapters: int = Field(
        32, ge=1, description="adapters tailorlm keeps loaded on the vLLM server (at most its --max-cpu-loras)"
    )
    adapter_path_map: dict[str, str] = Field(
        default_factory=dict,
        description="local folder -> the same folder as the vLLM server sees it (container mount), "
        'e.g. {"/home/me/.cache/tailorlm/files" = "/data/tailorlm/files"}',
    )
    adapter_base: str | None = Field(
        None,
        description="adapter_sync='vllm': the local model the served weights are ('smollm2' or a model "
        "folder, as `model` is for the local backend; or a full fingerprint): the lora methods look "
        "adapters up under its fingerprint, where `tailorlm train` filed them. None: under the "
        "served model's own name and URL",
    )


class EmbedderSettings(BaseModel):
    """Which sentence embedder turns texts into vectors."""

    backend: Literal["sentence-transformers"] = "sentence-transformers"
    model: str = Field("all-minilm-l6-v2", description="'all-minilm-l6-v2' (packaged default) or a local folder")
    batch_size: int = Field(64, ge=1, description="texts per forward pass")


class ServeSettings(BaseModel):
    """The HTTP service (``tailorlm serve``): where it listens and what it lets in.

    Safe by default: loopback only, 1 MiB bodies, a per-key rate limit and no CORS
    origins (browsers on other origins are refused; the workbench is same-origin).
    """

    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 exposes the service")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body accepted (413 beyond)")
    rate_limit_per_minute: int = Field(
        600, ge=0, description="requests per API key per minute (token bucket, bursts up to it); 0 = unlimited"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="exact origins allowed cross-origin, e.g. https://app.example.com"
    )
    memory: bool = Field(True, description="extract facts from conversations in the background")
    max_batch_size: int = Field(
        8, ge=1, le=256, description="rows decoded together (continuous batching); 1 = one request at a time"
    )
    prefill_together: Literal["auto", "on", "off"] = Field(
        "auto",
        description="prefill arrivals of similar length in one pass (auto: when the model runs in bf16, where "
        "a pass over 9 prompts cost 1.13 s against 1.35 s one after another here; in fp32 it saves nothing)",
    )
    prefill_first: bool = Field(
        True,
        description="admit and prefill requests that arrived during a prefill before the next decode step "
        "(a burst's later arrivals do not wait a step per wave; running rows wait at most max_batch_size prefills)",
    )
    prefill_tokens: int = Field(
        1024,
        ge=1,
        description="prompt tokens admitted per scheduler pass (at least one request): a burst is prefilled in "
        "waves of about this size (smaller: its first rows decode sooner; larger: fewer, more efficient passes)",
    )
    interrupt_steps: bool = Field(
        True,
        description="a decode step gives way (at the next decoder layer) to a request that arrives during it, "
        "so its prefill starts at once; costs the abandoned part of the step",
    )
    max_stall_s: float = Field(
        1.0,
        gt=0,
        description="with interrupt_steps: once the running rows have gone this long without a token, steps "
        "no longer give way (arrivals cannot starve them)",
    )
    max_queue: int = Field(64, ge=0, description="requests waiting for a batch slot before 429 (with Retry-After)")
    max_concurrent_per_key: int = Field(4, ge=1, description="requests in flight per API key before 429")
    personalize_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="requests personalized at once (each reads and indexes its user's history, so its memory "
        "grows with the history; more than the CPUs adds memory, not speed); 0 = the number of CPUs",
    )
    max_prompt_tokens: int = Field(
        4096, ge=16, description="longest prompt after personalization (also bounded by the model's context)"
    )
    max_tokens: int = Field(1024, ge=1, le=4096, description="largest max_tokens a request may ask for (400 beyond)")
    request_timeout_s: float = Field(
        300.0, gt=0, description="wall-clock limit per generation; the row is then cancelled and the client gets 504"
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="worker processes (each loads the model); above 1, rate limits and key state "
        "are shared through the store",
    )
    pooled_context: bool = Field(
        False,
        description="let persona/global fallback put other users' entries into a cold user's prompt "
        "(off: every answer is built from the requesting user's own data only)",
    )
    malloc_mmap_threshold: int = Field(
        1 << 20,
        ge=0,
        le=32 << 20,
        description="bytes from which glibc always mmaps (and returns when freed) a block, fixed when the "
        "app is built so large transient buffers do not stay resident (0: leave the allocator alone; "
        "MALLOC_MMAP_THRESHOLD_ in the environment wins)",
    )
    malloc_arena_max: int = Field(
        2,
        ge=0,
        le=1024,
        description="glibc heaps (arenas) the service's threads share, set when the app is built; per-thread "
        "heaps each keep the high-water mark of the histories their requests read (0: glibc's default, "
        "8 per CPU; MALLOC_ARENA_MAX in the environment wins)",
    )
    malloc_trim_interval_s: float = Field(
        30.0,
        ge=0,
        description="seconds between malloc_trim calls that return freed heap pages to the system (0: never)",
    )
    refuse_stale_artifacts: bool = Field(
        False,
        description="answer 503 (code 'stale_artifact') instead of serving a shared adapter, projector or "
        "persona description that learned from a since-deleted user, until `tailorlm train retrain-stale`",
    )

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, v: list[str]) -> list[str]:
        if any("*" in o for o in v):
            raise ValueError("cors_origins must list exact origins; '*' would let any web page call the API")
        return v


class Settings(BaseSettings):
    """Everything a tailorlm process needs to know; see the module docstring for sources."""

    model_config = SettingsConfigDict(env_prefix="TAILORLM_", env_nested_delimiter="__", extra="ignore")

    cache_dir: Path = Field(default_factory=default_cache_dir, description="models, datasets, adapters")
    store_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in cache_dir")
    history_cache_entries: int = Field(
        4096,
        ge=0,
        description="history entries a process keeps between requests while the user's data is unchanged; 0: none",
    )
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.cache_dir / 'tailorlm.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI overrides (init) > environment > config file > defaults.
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


def config_file_path() -> Path:
    env = os.environ.get("TAILORLM_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir("tailorlm")) / "config.toml"


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the TOML config file if it exists; a malformed file is an error naming it."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if not path.is_file():
            return {}
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path}: {exc}") from exc


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _drop_none(v)
            if not v:
                continue
        if v is not None:
            out[k] = v
    return out


def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``None`` overrides (unset CLI flags) are ignored.

    Example:
        >>> load_settings(store_url="sqlite:///:memory:").resolved_store_url
        'sqlite:///:memory:'
    """
    return Settings(**_drop_none(overrides))
