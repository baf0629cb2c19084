"""The loader registry, format detection, and ``load_dataset`` (one load = one transaction)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._errors import LoadError
from tailorlm.data.loaders._io import ByteTracker, open_binary
from tailorlm.data.loaders.amazon import AmazonReviewsLoader
from tailorlm.data.loaders.base import MAX_ERRORS_KEPT, Loader, LoadReport
from tailorlm.data.loaders.generic import CsvLoader, JsonlLoader
from tailorlm.data.loaders.lamp import LaMPLoader
from tailorlm.data.loaders.locomo import LoCoMoLoader
from tailorlm.data.loaders.movielens import MovieLensLoader
from tailorlm.data.loaders.personachat import PersonaChatLoader
from tailorlm.data.loaders.popquorn import PopquornLoader
from tailorlm.data.store import Store

__all__ = ["LOADERS", "detect_format", "load_dataset", "make_loader"]

LOADERS: dict[str, type[Loader]] = {
    "amazon": AmazonReviewsLoader,
    "movielens": MovieLensLoader,
    "lamp": LaMPLoader,
    "locomo": LoCoMoLoader,
    "personachat": PersonaChatLoader,
    "popquorn": PopquornLoader,
    "jsonl": JsonlLoader,
    "csv": CsvLoader,
}


def make_loader(fmt: str, **options: Any) -> Loader:
    """``LOADERS[fmt](**options)`` with errors that list what exists."""
    if fmt not in LOADERS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(LOADERS)}")
    try:
        return LOADERS[fmt](**options)
    except TypeError as exc:
        raise ValueError(f"bad options for the {fmt} loader: {exc}") from None


def _head(path: Path, n: int = 1 << 14) -> str:
    try:
        with open_binary(path) as f:
            return f.read(n).decode("utf-8", errors="replace")
    except (OSError, EOFError, ValueError):
        return ""


def detect_format(path: str | Path) -> str | None:
    """Best-effort guess of the loader for ``path`` from its content (for the CLI), else None."""
    p = Path(path)
    if p.is_dir():
        if (p / "u.data").is_file() or any(p.glob("*.inter")):
            return "movielens"
        if any(p.glob("*questions*.json")):
            return "lamp"
        return None
    if not p.is_file():
        return None
    if p.name == "u.data" or p.suffix in (".inter", ".user", ".item"):
        return "movielens"
    head = _head(p)
    first = head.lstrip("\ufeff").split("\n", 1)[0]
    stripped = head.lstrip("\ufeff \t\r\n")
    if first.startswith("1 your persona:") or first.startswith("1 partner's persona:"):
        return "personachat"
    if stripped.startswith("["):
        if '"profile"' in head:
            return "lamp"
        # LoCoMo samples open with their long "qa" list, so the conversation may lie past the head.
        if '"speaker_a"' in head or ('"evidence"' in head and '"category"' in head):
            return "locomo"
        return None
    if stripped.startswith("{"):
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if "reviewerID" in obj and "asin" in obj:
                return "amazon"
            return "jsonl"
        return None
    cols = {c.strip().strip('"') for c in first.split(",")}
    if {"instance_id", "user_id", "text"} <= cols:
        return "popquorn"
    if "," in first or "\t" in first:
        return "csv"
    return None


def _manifest_sha(files: list[Path], hashes: dict[str, str]) -> str | None:
    digests = []
    for f in files:
        h = hashes.get(str(f))
        if h is None:  # not read to the end by the loader: hash it now
            sha = hashlib.sha256()
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
            h = sha.hexdigest()
        digests.append((f.name, h))
    if not digests:
        return None
    if len(digests) == 1:
        return digests[0][1]
    manifest = "".join(f"{h}  {name}\n" for name, h in sorted(digests))
    return hashlib.sha256(manifest.encode()).hexdigest()


def _resolve_format(fmt: str, path: Path) -> str:
    """``fmt`` itself, or for ``"auto"`` the detected format (an error when there is none)."""
    if fmt != "auto":
        return fmt
    guess = detect_format(path)
    if guess is None:
        raise ValueError(f"cannot tell the format of {path}; pass one of {', '.join(LOADERS)}")
    return guess


def load_dataset(
    store: Store,
    fmt: str,
    path: str | Path,
    *,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 2000,
    **options: Any,
) -> LoadReport:
    """Load ``path`` with the ``fmt`` loader into ``store`` in ONE transaction.

    Args:
        fmt: a key of :data:`LOADERS`, or ``"auto"`` (:func:`detect_format`).
        skip_bad: skip malformed lines/rows (counted in ``skipped``, first 20
            messages in ``errors``) instead of failing. Errors that make the rest
            unreadable (corrupt gzip, broken JSON arrays) still fail.
        progress: called as ``progress(bytes_read, total_bytes)`` every 256 KiB
            read and once at the end (compressed bytes for gzip files).
        batch_size: records per flush inside the transaction.
        options: the loader's options, e.g. ``namespace="mine"``.

    Raises:
        LoadError: malformed input (without ``skip_bad``); the store is unchanged.
        ValueError: unknown format or options. Any exception rolls the load back.
    """
    path = Path(path)
    fmt = _resolve_format(fmt, path)
    loader = make_loader(fmt, **options)
    files = loader.files(path)
    tracker = ByteTracker(sum(f.stat().st_size for f in files), progress)
    errors: list[str] = []
    skipped = 0

    def on_error(exc: LoadError) -> None:
        nonlocal skipped
        skipped += 1
        if len(errors) < MAX_ERRORS_KEPT:
            errors.append(str(exc))

    started_at = int(time.time())
    t0 = time.perf_counter()
    before = store.counts()
    with store.writer(source=fmt, batch_size=batch_size) as w:
        records = loader.iter_records(path, on_error=on_error if skip_bad else None, tracker=tracker)
        with contextlib.closing(records):
            for rec in records:
                w.add(rec)
        tracker.finish()  # inside the transaction: a callback that raises still rolls back
    after = store.counts()
    seconds = time.perf_counter() - t0
    added = {k: after[k] - before.get(k, 0) for k in after}
    sha = _manifest_sha(files, tracker.hashes)
    store.record_load(
        source=fmt,
        path=str(path.resolve()),
        sha256=sha,
        started_at=started_at,
        records=w.records,
        skipped=skipped,
        counts=added,
    )
    return LoadReport(
        source=fmt,
        path=str(path),
        records=w.records,
        skipped=skipped,
        errors=errors,
        added=added,
        seconds=seconds,
        sha256=sha,
        duplicates=loader.duplicates,
        dropped_fields=loader.dropped_fields,
        files=[str(f) for f in files],
    )
