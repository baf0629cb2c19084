"""Model backends behind two small protocols: :class:`Generator` and :class:`Embedder`.

Backends:

- :class:`TransformersGenerator`: in-process Hugging Face model (packaged SmolLM2 by default),
  with per-row LoRA adapters.
- :class:`OpenAICompatibleGenerator`: any OpenAI-compatible server (vLLM multi-LoRA).
- :class:`VLLMAdapterGenerator`: the same, loading per-user adapters into vLLM on first use.
- :class:`SentenceTransformerEmbedder`: packaged all-MiniLM-L6-v2 or a local folder.

Importing this package is cheap: torch, transformers, sentence-transformers and httpx are
imported only when a backend is constructed. Use :func:`build_generator` and
:func:`build_embedder` to get the backends the settings ask for.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from tailorlm.errors import ConfigError
from tailorlm.models._packaged import SMOLLM2_NAME, smollm2_folder
from tailorlm.models.base import (
    BackendError,
    ChatMessage,
    Embedder,
    GenerationConfig,
    Generator,
    Messages,
    chat,
    model_fingerprint,
    normalize_messages,
)
from tailorlm.models.dtype import resolve_dtype
from tailorlm.models.embedders import SentenceTransformerEmbedder
from tailorlm.models.local import TransformersGenerator
from tailorlm.models.openai_http import OpenAICompatibleGenerator
from tailorlm.models.vllm_sync import VLLMAdapterGenerator

if TYPE_CHECKING:
    from tailorlm.settings import Settings

__all__ = [
    "BackendError",
    "ChatMessage",
    "Embedder",
    "GenerationConfig",
    "Generator",
    "Messages",
    "OpenAICompatibleGenerator",
    "SentenceTransformerEmbedder",
    "TransformersGenerator",
    "VLLMAdapterGenerator",
    "build_embedder",
    "build_generator",
    "chat",
    "local_fingerprint",
    "normalize_messages",
]


def build_generator(settings: Settings) -> Generator:
    """The generator ``settings.generator`` describes (loads the model when local)."""
    gen = settings.generator
    if gen.backend == "local":
        return TransformersGenerator(
            gen.model, cache_dir=settings.cache_dir, dtype=gen.dtype, gathered_lora=gen.gathered_lora
        )
    if gen.backend == "openai":
        if not gen.base_url:
            raise ValueError(
                "generator.base_url is required for the 'openai' backend; set it in the config "
                "file or with TAILORLM_GENERATOR__BASE_URL=http://host:port/v1"
            )
        if gen.adapter_base is not None and gen.adapter_sync != "vllm":
            raise ConfigError(
                "generator.adapter_base needs adapter_sync = 'vllm' (only that backend loads "
                "tailorlm's adapters into the server)"
            )
        if gen.adapter_sync == "vllm":  # adapters live under the store's files folder (Store.from_settings)
            base = gen.adapter_base
            if base is not None and "|" not in base:  # a model, not already a fingerprint
                base = local_fingerprint(base, cache_dir=settings.cache_dir, dtype=gen.dtype)
            return VLLMAdapterGenerator(
                gen.base_url,
                model=gen.model,
                api_key=gen.api_key,
                timeout_s=gen.timeout_s,
                max_server_adapters=gen.max_server_adapters,
                adapter_path_map=gen.adapter_path_map,
                adapter_root=Path(settings.cache_dir) / "files" / "adapters",
                adapter_base=base,
            )
        return OpenAICompatibleGenerator(gen.base_url, model=gen.model, api_key=gen.api_key, timeout_s=gen.timeout_s)
    raise ValueError(f"generator.backend {gen.backend!r} is not one of 'local', 'openai'")


def local_fingerprint(model: str, *, cache_dir: Path, dtype: str = "auto") -> str:
    """The :func:`~tailorlm.models.base.model_fingerprint` that ``TransformersGenerator(model,
    cache_dir=cache_dir, dtype=dtype)`` has, without loading (or converting) the model.

    Why: ``tailorlm train`` files adapters under the local model's fingerprint; a vLLM server
    serving the same weights must find them there (``generator.adapter_base``) without
    holding a copy of the model in this process.
    """
    if model == "smollm2":
        name, path = SMOLLM2_NAME, smollm2_folder(Path(cache_dir))
    else:
        path = Path(model).expanduser()
        name = path.name
    return model_fingerprint(SimpleNamespace(name=name, path=path, dtype=resolve_dtype(dtype)))


def build_embedder(settings: Settings) -> Embedder:
    """The embedder ``settings.embedder`` describes (loads the model)."""
    emb = settings.embedder
    if emb.backend == "sentence-transformers":
        return SentenceTransformerEmbedder(emb.model, batch_size=emb.batch_size)
    raise ValueError(f"embedder.backend {emb.backend!r} is not 'sentence-transformers'")
