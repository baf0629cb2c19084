"""A persistent cache of model calls, so an interrupted or repeated evaluation generates nothing twice.

:class:`CachedGenerator` wraps any generator. Each call is keyed by everything that
determines its output: the model (name and version/path), the exact conversation the
method built (so the method, its config and the example are all in the key, and a
changed prompt is never answered from a stale entry), the decoding settings, the
adapter and, for constrained choice, the choices. Only greedy (temperature 0) or
seeded generations are cached; sampling without a seed is not reproducible and is
passed through. Entries live in one SQLite file (WAL; safe for one writer at a time).

:class:`CachedEmbedder` does the same for text vectors: persona discovery embeds a
population's whole history (minutes on 2 CPUs for 10k reviews) in every process that
fits a clustered granularity, so a rerun, a resumed training queue or the next
``tailorlm train`` reads the vectors back instead.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tailorlm.models.base import (
    ChoiceScorer,
    GenerationConfig,
    Messages,
    model_fingerprint,
    normalize_batch,
    resolve_adapters,
)

__all__ = ["EMBEDDING_CACHE_FILE", "CachedEmbedder", "CachedGenerator", "clear_vectors"]

EMBEDDING_CACHE_FILE = "embeddings.sqlite"  # in cache_dir: the CLI's vectors (training, generation)
_VECTORS_DDL = "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, dim INTEGER, value BLOB)"


def _open(path: Path, ddl: str) -> sqlite3.Connection:
    """One cache file (WAL, autocommit; callers serialize with their own lock, and other
    processes sharing the file, such as Ray row workers, wait up to 60 s for its writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(ddl)
    return db


def _rows_for(db: sqlite3.Connection, select: str, keys: list[str]) -> list[tuple[Any, ...]]:
    """``select ... WHERE key IN (keys)``, in chunks that stay under SQLite's variable limit."""
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        rows += db.execute(f"{select} WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    return rows


def _insert(db: sqlite3.Connection, insert: str, rows: list[tuple[Any, ...]]) -> None:
    db.execute("BEGIN")
    db.executemany(insert, rows)
    db.execute("COMMIT")


class CachedGenerator:
    """A generator that answers from ``path`` when it can and records what it computes.

    ``hits`` and ``misses`` count conversations (not calls), so a test can assert that a
    rerun computed nothing new.

    With ``refresh`` (``tailorlm bench --fresh``) entries written before this object was
    made are not served: every conversation is generated again and the fresh value
    replaces the stored one. Values computed during this run are still shared, so a
    prompt two methods build identically is generated once.
    """

    def __init__(self, generator: Any, path: str | Path, *, refresh: bool = False) -> None:
        self.generator = generator
        self.refresh = refresh
        self._written: set[str] = set()  # keys computed by this object (the ones refresh may serve)
        self.name = getattr(generator, "name", type(generator).__name__)
        self.fingerprint = model_fingerprint(generator)
        self.path = Path(path)
        self._db = _open(self.path, "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, kind TEXT, value TEXT)")
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:  # count_tokens, adapters, ... of the wrapped generator
        return getattr(self.generator, name)

    def close(self) -> None:
        self._db.close()

    def _key(self, kind: str, conv: list[dict[str, str]], extra: dict[str, Any]) -> str:
        blob = json.dumps({"model": self.fingerprint, "kind": kind, "messages": conv, **extra}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _get(self, keys: list[str]) -> dict[str, str]:
        with self._lock:
            if self.refresh:
                keys = [k for k in keys if k in self._written]
            return dict(_rows_for(self._db, "SELECT key, value FROM calls", keys)) if keys else {}

    def _put(self, kind: str, items: list[tuple[str, str]]) -> None:
        with self._lock:
            self._written.update(k for k, _ in items)
            rows = [(k, kind, v) for k, v in items]
            _insert(self._db, "INSERT OR REPLACE INTO calls (key, kind, value) VALUES (?, ?, ?)", rows)

    def generate(
        self,
        batch: Sequence[Messages],
        *,
        config: GenerationConfig | None = None,
        adapter: str | Sequence[str | None] | None = None,
        soft_prompt: Sequence[Any] | None = None,
    ) -> list[str]:
        config = config or GenerationConfig()
        convs = normalize_batch(batch)
        adapters = resolve_adapters(adapter, len(convs))
        softs = _soft_rows(soft_prompt, len(convs))
        if not config.greedy and config.seed is None:
            return self.generator.generate(batch, config=config, adapter=adapter, **_soft_kw(soft_prompt))
        cfg = asdict(config)
        keys = [
            self._key("generate", c, {"config": cfg, "adapter": a} | _soft_key(sp))
            for c, a, sp in zip(convs, adapters, softs, strict=True)
        ]
        found = self._get(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            sub_adapters = [adapters[i] for i in todo]
            texts = self.generator.generate(
                [convs[i] for i in todo],
                config=config,
                adapter=sub_adapters if any(sub_adapters) else None,
                **_soft_kw(soft_prompt and [softs[i] for i in todo]),
            )
            self._put("generate", [(keys[i], json.dumps(t)) for i, t in zip(todo, texts, strict=True)])
            found.update({keys[i]: json.dumps(t) for i, t in zip(todo, texts, strict=True)})
        return [json.loads(found[k]) for k in keys]

    def score_choices(
        self,
        batch: Sequence[Messages],
        choices: Sequence[str],
        *,
        adapter: str | Sequence[str | None] | None = None,
        soft_prompt: Sequence[Any] | None = None,
    ) -> np.ndarray:
        if not isinstance(self.generator, ChoiceScorer):
            raise TypeError(f"{type(self.generator).__name__} cannot score choices")
        convs = normalize_batch(batch)
        adapters = resolve_adapters(adapter, len(convs))
        softs = _soft_rows(soft_prompt, len(convs))
        keys = [
            self._key("score", c, {"choices": list(choices), "adapter": a} | _soft_key(sp))
            for c, a, sp in zip(convs, adapters, softs, strict=True)
        ]
        found = self._get(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            sub_adapters = [adapters[i] for i in todo]
            scores = np.asarray(
                self.generator.score_choices(
                    [convs[i] for i in todo],
                    choices,
                    adapter=sub_adapters if any(sub_adapters) else None,
                    **_soft_kw(soft_prompt and [softs[i] for i in todo]),
                ),
                dtype=float,
            )
            rows = [(keys[i], json.dumps(row.tolist())) for i, row in zip(todo, scores, strict=True)]
            self._put("score", rows)
            found.update(dict(rows))
        return np.asarray([json.loads(found[k]) for k in keys], dtype=float)


def _soft_rows(soft_prompt: Sequence[Any] | None, n: int) -> list[Any]:
    if soft_prompt is None:
        return [None] * n
    if len(soft_prompt) != n:
        raise ValueError(f"soft_prompt has {len(soft_prompt)} rows for a batch of {n}")
    return list(soft_prompt)


def _soft_kw(soft_prompt: Sequence[Any] | None) -> dict[str, Any]:
    """Pass soft prompts on only when there are some: other generators do not take the argument."""
    return (
        {"soft_prompt": list(soft_prompt)}
        if soft_prompt is not None and any(s is not None for s in soft_prompt)
        else {}
    )


def _soft_key(soft: Any) -> dict[str, str]:
    """A row's soft prompt is part of its input: key the cache on its exact values."""
    if soft is None:
        return {}
    arr = np.ascontiguousarray(
        soft.detach().cpu().float().numpy() if hasattr(soft, "detach") else np.asarray(soft, dtype=np.float32)
    )
    return {"soft_prompt": hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()}


class CachedEmbedder:
    """An embedder that stores every vector it computes in ``path``, keyed by model and text.

    The key holds the embedder's name, version and dimension, so vectors of another model
    (or another build of it) are never served. The wrapped embedder is asked for its
    identity only when a text must be looked up, which keeps a lazy embedder lazy.
    ``hits`` and ``misses`` count texts.
    """

    def __init__(self, embedder: Any, path: str | Path) -> None:
        self.embedder = embedder
        self.path = Path(path)
        self._db = _open(self.path, _VECTORS_DDL)
        self._lock = threading.Lock()
        self._model: str | None = None
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.embedder.name

    @property
    def version(self) -> str:
        return self.embedder.version

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def close(self) -> None:
        self._db.close()

    def _key(self, text: str) -> str:
        if self._model is None:
            self._model = f"{self.embedder.name}|{self.embedder.version}|{self.embedder.dim}"
        return hashlib.sha256(f"{self._model}\n{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return self.embedder.embed(texts)
        keys = [self._key(t) for t in texts]
        with self._lock:
            rows = _rows_for(self._db, "SELECT key, dim, value FROM vectors", keys)
        found = {key: np.frombuffer(blob, dtype=np.float32, count=dim) for key, dim, blob in rows}
        missing = list(dict.fromkeys(k for k in keys if k not in found))  # a repeated text is embedded once
        self.misses += sum(k not in found for k in keys)
        self.hits += sum(k in found for k in keys)
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            vectors = np.asarray(self.embedder.embed([text_of[k] for k in missing]), dtype=np.float32)
            new = [(k, int(v.shape[0]), v.tobytes()) for k, v in zip(missing, vectors, strict=True)]
            with self._lock:
                _insert(self._db, "INSERT OR REPLACE INTO vectors (key, dim, value) VALUES (?, ?, ?)", new)
            found.update(zip(missing, vectors, strict=True))
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def clear_vectors(path: str | Path) -> int:
    """Delete every vector cached in ``path`` (a :class:`CachedEmbedder` file); how many.

    Why all of them: entries are keyed by text alone, and the texts a run embeds include
    queries, which the store never keeps, so a deleted user's vectors cannot be told from
    others'. ``secure_delete`` overwrites the freed pages, and the checkpoint empties the
    write-ahead log, so the vectors are not left in the file's free space either."""
    db = _open(Path(path), _VECTORS_DDL)
    try:
        db.execute("PRAGMA secure_delete = ON")
        n = db.execute("DELETE FROM vectors").rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return int(n)
