"""fetch_movielens_100k: the real fallback through pip (network to the package index), and the
GroupLens path against a local HTTP server serving a zip of the same layout."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tailorlm.errors
from tailorlm.data import fetch
from tailorlm.data.fetch import FetchError, fetch_movielens_100k
from tailorlm.data.loaders import MovieLensLoader, count_lines

# ml-100k.inter in recbole==1.2.1 (the same bytes as ../shared/data/movielens-100k, see its README)
RECBOLE_INTER_SHA256 = "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
_NETWORK_HINTS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Failed to establish",
    "No matching distribution",
    "Could not find a version",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
)


def test_fetch_movielens_100k_via_pip(tmp_path: Path) -> None:
    """Real: GroupLens is unreachable on the test machines, so this exercises the pip fallback."""
    calls: list[tuple[int, int]] = []
    try:
        folder = fetch_movielens_100k(tmp_path, progress=lambda d, t: calls.append((d, t)), connect_timeout=3)
    except FetchError as exc:
        if any(h in str(exc) for h in _NETWORK_HINTS):
            pytest.skip(f"neither files.grouplens.org nor the package index is reachable: {exc}")
        raise
    assert folder == tmp_path / "datasets" / "ml-100k"
    assert [p.name for p in folder.parent.iterdir()] == ["ml-100k"]  # no temp folders left behind
    if (folder / "u.data").is_file():  # GroupLens was reachable after all
        assert count_lines(folder / "u.data") == 100_000
    else:
        inter = folder / "ml-100k.inter"
        assert count_lines(inter) == 100_001
        assert hashlib.sha256(inter.read_bytes()).hexdigest() == RECBOLE_INTER_SHA256
        assert {"ml-100k.user", "ml-100k.item"} <= {p.name for p in folder.iterdir()}
    assert calls and calls[-1][0] == calls[-1][1]
    assert len(MovieLensLoader().files(folder)) == 3

    # Idempotent: a second call returns at once and rewrites nothing.
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    t0 = time.perf_counter()
    assert fetch_movielens_100k(tmp_path) == folder
    assert time.perf_counter() - t0 < 0.5
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp


def _zip(ratings: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ml-100k/", "")
        z.writestr(
            "ml-100k/u.data",
            "".join(f"{i % 943 + 1}\t{i % 1682 + 1}\t{i % 5 + 1}\t{880000000 + i}\n" for i in range(ratings)),
        )
        z.writestr("ml-100k/u.user", "1|24|M|technician|85711\n")
        z.writestr(
            "ml-100k/u.item",
            "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join("0" * 19) + "\n",
        )
        z.writestr("ml-100k/../../escape.txt", "must not be written outside the folder")
    return buf.getvalue()


@pytest.fixture
def grouplens_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    """A real local HTTP server standing in for files.grouplens.org; set content["zip"]."""
    content: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = content.get("zip")
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(fetch, "ML100K_URL", f"http://127.0.0.1:{server.server_port}/ml-100k.zip")
    yield content
    server.shutdown()
    server.server_close()


def test_fetch_from_grouplens_zip(tmp_path: Path, grouplens_server: dict[str, bytes]) -> None:
    grouplens_server["zip"] = _zip(100_000)
    calls: list[tuple[int, int]] = []
    folder = fetch_movielens_100k(tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert sorted(p.name for p in folder.iterdir()) == [
        ".complete.json",
        "u.data",
        "u.item",
        "u.user",
    ]
    assert count_lines(folder / "u.data") == 100_000
    assert calls[-1] == (len(grouplens_server["zip"]),) * 2
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "datasets" / "escape.txt").exists()
    assert '"source": "http://127.0.0.1' in (folder / ".complete.json").read_text()


def test_fetch_failure_leaves_nothing(
    tmp_path: Path, grouplens_server: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip with the wrong rating count is refused, the fallback fails too (a version that does
    not exist): FetchError naming both, and no folder, temporary or final, is left behind."""
    grouplens_server["zip"] = _zip(10)
    monkeypatch.setattr(fetch, "RECBOLE_REQUIREMENT", "recbole==0.0.0.dev0")
    with pytest.raises(FetchError) as info:
        fetch_movielens_100k(tmp_path)
    assert "10 lines, expected 100000" in str(info.value)
    assert "recbole==0.0.0.dev0" in str(info.value)
    assert list((tmp_path / "datasets").iterdir()) == []


def test_fetch_error_is_the_package_one() -> None:
    """One definition (tailorlm.errors), still importable from tailorlm.data.fetch; a RuntimeError as before."""
    assert FetchError is tailorlm.errors.FetchError
    assert issubclass(FetchError, tailorlm.errors.TailorlmError) and issubclass(FetchError, RuntimeError)
    assert "FetchError" in fetch.__all__
