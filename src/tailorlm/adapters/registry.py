"""The adapter registry: where trained adapters live on disk and how they are found again.

Why a registry rather than ad-hoc folders: an adapter is only usable with the base
model it was trained on, per task, at one scope, and must disappear when its user is
deleted. So every adapter is addressed by an :class:`AdapterKey`, filed under its base
model's fingerprint, and recorded as a store ``Artifact`` (kind ``"adapter"``) whose
``path`` is the adapter folder -- ``Store.delete_user`` then removes the files too.

Writes are atomic-ish: a trainer saves into a fresh folder from :meth:`AdapterRegistry.folder_for`
and only then calls :meth:`AdapterRegistry.register`, which swaps the record and removes
the replaced adapter's folder. A crash mid-training therefore leaves at worst an orphan
folder, never a record pointing at half-written weights.

Names are unique per key *and* content (``lora-user-<key sha>-<weights sha>``): a
retrained adapter never reuses a name, so generation caches keyed on the adapter name
can never serve a stale answer.

Provenance: trainers pass a :class:`~tailorlm.data.TrainingManifest` (the users whose data
trained the adapter, the job that re-runs it, the adapter it started from) to
:meth:`AdapterRegistry.register`; the store keeps it, so deleting one of those users marks
the adapter stale until ``tailorlm train retrain-stale`` rebuilds it. A record without one
(written before manifests existed) has ``manifest=None``: provenance unknown.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from tailorlm.data import ArtifactRef, Store, TrainingManifest

__all__ = ["ADAPTER_KIND", "META_FILE", "AdapterKey", "AdapterRecord", "AdapterRegistry", "AdapterScope"]

AdapterScope = Literal["user", "persona", "global"]
ADAPTER_KIND = "adapter"
META_FILE = "meta.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_DTYPE = re.compile(r"\|dtype=[^|]*")


def _without_dtype(fingerprint: str) -> str:
    return _DTYPE.sub("", fingerprint)


def _with_dtype(fingerprint: str, dtype: str) -> str:
    """``fingerprint`` as :func:`~tailorlm.models.base.model_fingerprint` wrote it for ``dtype``
    (after the path, before the base URL), or unchanged when it names no dtype."""
    return _DTYPE.sub(f"|dtype={dtype}", fingerprint)


def _slug(text: str) -> str:
    """A path component for ``text``: readable when it is already safe, else slug + hash
    (so two different values never share a folder)."""
    slug = _SAFE.sub("_", text).strip("._") or "_"
    return slug if slug == text else f"{slug[:40]}-{_sha(text)[:8]}"


@dataclass(frozen=True)
class AdapterKey:
    """What an adapter is for. ``owner`` is a user id, a persona id, or '' for global."""

    method: str
    scope: AdapterScope
    owner: str
    task: str
    variant: str = "default"

    def __post_init__(self) -> None:
        for name in ("method", "task", "variant"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"AdapterKey.{name} must be a non-empty string, got {value!r}")
        if self.scope not in get_args(AdapterScope):
            raise ValueError(f"AdapterKey.scope must be one of {get_args(AdapterScope)}, got {self.scope!r}")
        if not isinstance(self.owner, str):
            raise ValueError(f"AdapterKey.owner must be a string, got {self.owner!r}")
        if self.scope == "global" and self.owner:
            raise ValueError(f"AdapterKey.owner must be '' for scope 'global', got {self.owner!r}")
        if self.scope != "global" and not self.owner:
            raise ValueError(f"AdapterKey.owner is required for scope {self.scope!r} (a user or persona id)")

    def encode(self) -> str:
        """One stable string for the whole key (what names and hashes are derived from)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class AdapterRecord:
    """A registered adapter: its key, folder, load name, base model and training metadata.

    ``meta`` holds what the trainer measured: steps, loss_curve, seconds, examples,
    tokens, data_snapshot, config; the registry adds size_bytes and created_at.
    ``manifest`` is the training manifest's summary (counts and the job, no user ids;
    :meth:`~tailorlm.data.TrainingManifest.summary`), None when provenance is unknown.
    """

    key: AdapterKey
    path: Path
    name: str
    base_model: str
    meta: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    @property
    def final_loss(self) -> float | None:
        curve = self.meta.get("loss_curve") or []
        return float(curve[-1]) if curve else None


def _canonical_config(data: bytes) -> bytes:
    """PEFT's adapter_config.json with its name lists sorted: PEFT keeps ``target_modules`` as a
    set and writes it in set order, which follows the process's string-hash seed, so the same
    adapter trained in two processes (two Ray workers) would otherwise digest differently."""
    try:
        config = json.loads(data)
    except ValueError:
        return data
    if not isinstance(config, dict):
        return data
    for k, v in config.items():
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            config[k] = sorted(v)
    return json.dumps(config, sort_keys=True).encode()


def _weights_digest(folder: Path) -> tuple[str, int]:
    """sha256 over every file but meta.json (relative path + bytes; the adapter config in a
    canonical form) and their total size."""
    h = hashlib.sha256()
    size = 0
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or (p.name == META_FILE and p.parent == folder):
            continue
        data = p.read_bytes()
        size += len(data)
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(b"\0")
        h.update(_canonical_config(data) if p.name == "adapter_config.json" else data)
    return h.hexdigest(), size


class AdapterRegistry:
    """Adapters of one base model, stored under ``root`` and recorded in ``store``.

    Layout: ``root/<base sha>/<task>/<method>/<scope>/<owner sha>/<variant>/<version>/``.
    ``root`` defaults to ``store.files_dir / "adapters"``; keep it inside ``files_dir``,
    since ``Store.delete_user`` only removes files there.
    """

    def __init__(self, store: Store, *, base_model: str, root: Path | None = None) -> None:
        if not base_model:
            raise ValueError("base_model must be the model_fingerprint of the base model, got ''")
        self.store = store
        # An adapter is trained on a model, not on a precision: one trained in fp32 serves a
        # bf16 copy of the same weights. Keys leave the dtype out; records written before
        # they did (the fingerprint with its dtype, or with fp32) are still found.
        self.base_model = _without_dtype(base_model)
        self._legacy = [
            m for m in dict.fromkeys([base_model, _with_dtype(base_model, "float32")]) if m != self.base_model
        ]
        self.root = Path(root) if root is not None else Path(store.files_dir) / "adapters"
        self._base_sha = _sha(self.base_model)[:12]
        self._legacy_shas = [_sha(m)[:12] for m in self._legacy]

    def __repr__(self) -> str:
        return f"AdapterRegistry(base_model={self.base_model!r}, root='{self.root}')"

    # -- paths and keys ---------------------------------------------------------------

    def _key_dir(self, key: AdapterKey) -> Path:
        owner = _sha(key.owner)[:12] if key.owner else "_global"
        return self.root / self._base_sha / _slug(key.task) / _slug(key.method) / key.scope / owner / _slug(key.variant)

    def _artifact_key(self, key: AdapterKey, base_sha: str | None = None) -> str:
        return f"{key.method}|{key.task}|{key.variant}|{base_sha or self._base_sha}"

    def _artifact_keys(self, key: AdapterKey) -> list[str]:
        """The key records of ``key`` are stored under: current first, then legacy ones."""
        return [self._artifact_key(key), *(self._artifact_key(key, sha) for sha in self._legacy_shas)]

    def folder_for(self, key: AdapterKey) -> Path:
        """A fresh, empty folder to save a new version of ``key``'s adapter into (created).

        A new version gets its own folder so the current one stays usable until
        :meth:`register` swaps them.
        """
        folder = self._key_dir(key) / f"v{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True, exist_ok=False)
        return folder

    # -- records ------------------------------------------------------------------------

    def ref(self, key: AdapterKey) -> ArtifactRef | None:
        """The store artifact that holds ``key``'s current record (what a manifest inherits from)."""
        from tailorlm.data import ArtifactRef

        for artifact_key in self._artifact_keys(key):
            art = self.store.get_artifact(scope=key.scope, owner=key.owner, kind=ADAPTER_KIND, key=artifact_key)
            if art is not None and self._from_artifact(art) is not None:
                return ArtifactRef(key.scope, key.owner, ADAPTER_KIND, artifact_key)
        return None

    def register(
        self, key: AdapterKey, folder: Path, meta: dict[str, Any], *, manifest: TrainingManifest | None = None
    ) -> AdapterRecord:
        """Record the adapter saved in ``folder`` as the current one for ``key``.

        Writes ``meta.json`` into the folder, replaces any older record of the key and
        deletes the older version's folder. ``manifest`` says who trained it (stored with
        the record in one transaction; it replaces, and so clears, the old version's stale mark).

        Raises:
            FileNotFoundError: ``folder`` is missing or holds no files.
        """
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"cannot register {key}: adapter folder {folder} does not exist")
        digest, size = _weights_digest(folder)
        if size == 0:
            raise FileNotFoundError(f"cannot register {key}: adapter folder {folder} holds no weight files")
        name = f"{_slug(key.method)}-{key.scope}-{_sha(key.encode())[:8]}-{digest[:8]}"
        full_meta = {**meta, "size_bytes": size, "created_at": meta.get("created_at", time.time())}
        full_meta = json.loads(json.dumps(full_meta, default=str))  # as get() will return it (tuples -> lists)
        summary = manifest.summary() if manifest is not None else None
        record = AdapterRecord(
            key=key, path=folder, name=name, base_model=self.base_model, meta=full_meta, manifest=summary
        )
        (folder / META_FILE).write_text(json.dumps(self._payload(record), indent=1, default=str))

        old = self.get(key)
        from tailorlm.data import Artifact

        self.store.put_artifact(
            Artifact(
                scope=key.scope,
                owner=key.owner,
                kind=ADAPTER_KIND,
                key=self._artifact_key(key),
                payload=json.loads(json.dumps(self._payload(record), default=str)),
                path=str(folder),
                model=self.base_model,
            ),
            manifest=manifest,
        )
        for legacy in self._artifact_keys(key)[1:]:  # the new record replaces a legacy one too
            self.store.delete_artifact(scope=key.scope, owner=key.owner, kind=ADAPTER_KIND, key=legacy)
        if old is not None and old.path.resolve() != folder:
            shutil.rmtree(old.path, ignore_errors=True)
        return record

    @staticmethod
    def _payload(record: AdapterRecord) -> dict[str, Any]:
        out = {"key": asdict(record.key), "name": record.name, "base_model": record.base_model, "meta": record.meta}
        return out if record.manifest is None else {**out, "manifest": record.manifest}

    def record_of(self, art: Any) -> AdapterRecord | None:
        """The record a stored adapter artifact holds, or None when it is not one of this base model's."""
        return self._from_artifact(art)

    def _from_artifact(self, art: Any) -> AdapterRecord | None:
        p = art.payload or {}
        if (art.model != self.base_model and art.model not in self._legacy) or "key" not in p or not art.path:
            return None
        return AdapterRecord(
            key=AdapterKey(**p["key"]),
            path=Path(art.path),
            name=p["name"],
            base_model=art.model,
            meta=dict(p.get("meta") or {}),
            manifest=p["manifest"] if isinstance(p.get("manifest"), dict) else None,
        )

    def get(self, key: AdapterKey) -> AdapterRecord | None:
        """The current adapter for ``key`` on this base model, or None."""
        for artifact_key in self._artifact_keys(key):
            art = self.store.get_artifact(scope=key.scope, owner=key.owner, kind=ADAPTER_KIND, key=artifact_key)
            if art is not None and (rec := self._from_artifact(art)) is not None:
                return rec
        return None

    def list(
        self,
        *,
        method: str | None = None,
        scope: str | None = None,
        owner: str | None = None,
        task: str | None = None,
    ) -> list[AdapterRecord]:
        """Registered adapters of this base model, filtered by any of the key fields."""
        out: list[AdapterRecord] = []
        for art in self.store.list_artifacts(scope=scope, owner=owner, kind=ADAPTER_KIND):
            rec = self._from_artifact(art)
            if rec is None:
                continue
            if method is not None and rec.key.method != method:
                continue
            if task is not None and rec.key.task != task:
                continue
            out.append(rec)
        return out

    def delete(self, key: AdapterKey) -> bool:
        """Remove the record and its folder; False when ``key`` has no adapter."""
        rec = self.get(key)
        if rec is None:
            return False
        for artifact_key in self._artifact_keys(key):  # a legacy record would otherwise resurface
            self.store.delete_artifact(scope=key.scope, owner=key.owner, kind=ADAPTER_KIND, key=artifact_key)
        shutil.rmtree(rec.path, ignore_errors=True)  # store only removes files inside files_dir
        return True
