"""Shared fixtures: stores on SQLite and on a real PostgreSQL server, and the shared data folder.

PostgreSQL comes from ``TAILORLM_TEST_PG_URL`` if set, else a throwaway cluster
started from Debian's server binaries in a temp dir (initdb refuses root, so we
run it as the ``postgres`` user). Where neither is possible the PostgreSQL half
of the suite is skipped with the reason, unless ``TAILORLM_REQUIRE_PG=1`` (set by
CI), which turns the skip into a failure.

A PostgreSQL with pgvector (the ANN index tests) comes from ``TAILORLM_TEST_PGVECTOR_URL``
if set, else from the ``pgserver`` package (a dev extra that bundles PostgreSQL 16
with the ``vector`` extension), started once per session in a temp dir and probed with
a tiny HNSW build (a pgvector compiled for another CPU dies there, not mid-test). Debian's server
has no pgvector, so without either the tests skip with the reason, unless
``TAILORLM_REQUIRE_PGVECTOR=1`` (set by CI) turns the skip into a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("TAILORLM_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def smollm():
    """The real packaged generator, loaded once per test session.

    It uses the real user cache dir so the one-off GGUF conversion happens at most once
    per machine, not once per test run.
    """
    from tailorlm.models import TransformersGenerator
    from tailorlm.settings import default_cache_dir

    return TransformersGenerator("smollm2", cache_dir=default_cache_dir())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path} (set TAILORLM_SHARED_DATA)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("TAILORLM_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL required (TAILORLM_REQUIRE_PG=1) but unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Base URL (without database) of a real PostgreSQL server for this test session."""
    if url := os.environ.get("TAILORLM_TEST_PG_URL"):
        yield url.rstrip("/")
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        _pg_unavailable("no server binaries (apt-get install postgresql) and TAILORLM_TEST_PG_URL unset")
    bindir = Path(bins[-1]).parent
    tmp = Path(tempfile.mkdtemp(prefix="tailorlm-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(tmp, user="postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = tmp / "data"
    try:
        subprocess.run(
            [*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_pg,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(tmp / "log"),
                "-w",
                "-o",
                f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        _pg_unavailable(f"could not start a throwaway cluster: {exc} {detail.decode(errors='replace')[-500:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the session's server, one per test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = pg_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test once on SQLite and once on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str, tmp_path: Path):
    from tailorlm.data import Store

    s = Store(store_url, files_dir=tmp_path / "files")
    yield s
    s.close()


def _pgvector_unavailable(reason: str) -> None:
    if os.environ.get("TAILORLM_REQUIRE_PGVECTOR") == "1":
        pytest.fail(f"pgvector required (TAILORLM_REQUIRE_PGVECTOR=1) but unavailable: {reason}")
    pytest.skip(f"no pgvector-capable PostgreSQL: {reason}")


def _hnsw_problem(conninfo: str) -> str | None:
    """Why an HNSW index cannot be built and searched on this server, or None when it can."""
    import psycopg

    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("CREATE TEMP TABLE probe (e vector(3))")
            conn.execute("INSERT INTO probe VALUES ('[1,0,0]'), ('[0,1,0]')")
            conn.execute("CREATE INDEX ON probe USING hnsw (e vector_cosine_ops)")
            conn.execute("SELECT * FROM probe ORDER BY e <=> '[1,0,0]' LIMIT 1").fetchall()
    except psycopg.Error as exc:
        return f"the server's pgvector cannot build an HNSW index (built for another CPU?): {exc}"
    return None


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    """Base URL (without database) of a PostgreSQL server that has the ``vector`` extension."""
    if url := os.environ.get("TAILORLM_TEST_PGVECTOR_URL"):
        yield url.rstrip("/")
        return
    try:
        import pgserver
    except ImportError:
        _pgvector_unavailable(
            "pgserver is not installed (pip install -e '.[dev]') and TAILORLM_TEST_PGVECTOR_URL unset"
        )
    tmp = Path(tempfile.mkdtemp(prefix="tailorlm-pgvector-"))
    try:
        server = pgserver.get_server(tmp / "data", cleanup_mode="delete")
    except Exception as exc:  # any start failure is reported, then skip or fail
        shutil.rmtree(tmp, ignore_errors=True)
        _pgvector_unavailable(f"pgserver could not start a server: {exc!r}")
    try:
        # pgserver gives a unix-socket URI: postgresql://postgres:@/postgres?host=<dir>
        uri = server.get_uri()
        if (problem := _hnsw_problem(uri)) is not None:
            _pgvector_unavailable(problem)
        host = uri.split("host=", 1)[1]
        yield f"postgresql+psycopg://postgres@/?host={host}"
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pgvector_url(pgvector_server: str) -> str:
    """A fresh, empty database on the pgvector server, one per test."""
    import psycopg

    base, _, query = pgvector_server.partition("/?")
    conninfo = base.replace("postgresql+psycopg://", "postgresql://") + "/postgres" + (f"?{query}" if query else "")
    name = f"v_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}" + (f"?{query}" if query else "")
