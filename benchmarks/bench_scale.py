"""Benchmark personalization overhead as the store grows: 10k, 1M and 10M documents.

One store per backend (SQLite in a temp file; PostgreSQL in a throwaway cluster) is grown
incrementally to each size in ``--sizes`` (default 10,000, 1,000,000 and 10,000,000
documents), never reloaded from zero, and measured after each increment:

- the store first gets two probe users, ``scale:probe100`` (100 reviews) and
  ``scale:probe1000`` (1,000 reviews): real Amazon musical-instrument reviews (the first
  1,000 of the file, cycled if the set is smaller), with their item ids and timestamps;
- filler documents are real reviews cycled over synthetic users ``scale:filler:<n>``
  (20 documents each) until the store holds the next size. Every document has a unique
  id ``scale:<n>``; they are written in chunks of 20,000 records, one ``Store.writer``
  transaction per chunk (``Store.add`` also counts every table before and after, which at
  10M documents would time the counts, not the load); load seconds and documents/s are
  reported per increment;
- at each size, with the store's per-process history cache on and off (``--history-cache``:
  on, a repeated request reads the user's data version and reuses their parsed history
  while it holds; off, every request reads and parses the user's rows), for ``rag-bm25`` and ``rag-dense`` (built by
  :func:`~tailorlm.personalize.parse_method_spec` and fitted on the whole store) and each
  probe user: 5 warm-up then ``--queries`` timed ``personalize(user, Query(review,
  task="amazon-title"))`` calls (retrieval plus prompt building, no generation), queries
  being real reviews from the end of the file, none in the probes' history; p50/p99 ms,
  the store's document count and its on-disk bytes (SQLite: the file plus its WAL;
  PostgreSQL: ``pg_database_size``).

Dense retrieval per user ranks only that user's own entries, so only the probe users'
documents get vectors (all-MiniLM-L6-v2, embedded once, cached as an .npy file in
``--emb-cache``, written with ``Store.put_embeddings`` before the first measurement); the
warm-up loads them into the ranker's memory, so a timed request embeds only its query.
That query embedding dominates ``rag-dense`` and is very sensitive to CPU contention: on a
2-CPU machine with another busy process, torch's default 2 intra-op threads took ~930 ms
per query against ~66 ms with one thread; ``--torch-threads 1`` there (the setting used
is in ``machine.torch_threads``).

Recall@10 of the pgvector ANN index against exact search (pooled, cross-user retrieval)
is not measured here: ``benchmarks/bench_ann.py`` does that.

PostgreSQL comes from ``--pg-url`` (a server URL without a database, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432``; a fresh database is created on it),
else a throwaway cluster started with Debian's ``/usr/lib/postgresql/*/bin/initdb`` in
the work dir (as the ``postgres`` user when run as root; ``fsync=off``), else the
``pgserver`` package; where none works the PostgreSQL half is skipped with the reason.

Writes ``--out`` (JSON: rows ``{store, size, method, user_items, p50_ms, p99_ms, n}``,
loads, machine, command, date, and ``p99_<largest>_over_<smallest>`` per store, method
and probe, e.g. ``p99_10M_over_10k``) and the same name with ``.md`` (tables).

Usage::

    python benchmarks/bench_scale.py                       # 10k, 1M, 10M; SQLite and PostgreSQL
    python benchmarks/bench_scale.py --sizes 10000,100000 --stores sqlite --queries 20
    python benchmarks/bench_scale.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432 \\
        --work-dir /big/disk --keep
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROBES = {"scale:probe100": 100, "scale:probe1000": 1000}
FILLER_DOCS_PER_USER = 20
CHUNK = 20_000
WARMUP = 5
HISTORY_CACHE_ENTRIES = 4096  # the store's default


import bench_overhead as bo  # noqa: E402  (a sibling script: its folder is first on sys.path)

# -- data ---------------------------------------------------------------------------------------


def load_timed_reviews(path: Path) -> list[dict[str, Any]] | None:
    """``bench_overhead.load_reviews`` plus each review's ``unixReviewTime`` as ``time``."""
    reviews = bo.load_reviews(path)
    if reviews is None:
        return None
    times = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if (r.get("reviewText") or "").strip():  # the same filter as load_reviews
                times.append(r.get("unixReviewTime"))
    assert len(times) == len(reviews)
    return [r | {"time": t} for r, t in zip(reviews, times, strict=True)]


def size_label(n: int) -> str:
    """10000 -> 10k, 1000000 -> 1M, 1500 -> 1500."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


@dataclass
class Corpus:
    """Generates the store's documents in a fixed order: the probes first, then filler."""

    reviews: list[dict[str, Any]]
    probe_docs: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    n: int = 0  # documents generated so far (the next doc id)

    def _doc(self, user_id: str, review: dict[str, Any]) -> Any:
        from tailorlm.data import Document

        doc = Document(
            user_id=user_id,
            doc_id=f"scale:{self.n}",
            doc_kind="review",
            text=review["text"],
            title=review["summary"],
            rating=review["rating"],
            item_id=review["asin"],
            timestamp=review["time"],
        )
        self.n += 1
        return doc

    def probes(self) -> Iterator[Any]:
        for user, items in PROBES.items():
            rows = []
            for i in range(items):
                review = self.reviews[i % len(self.reviews)]
                doc = self._doc(user, review)
                rows.append((doc.doc_id, review))
                yield doc
            self.probe_docs[user] = rows

    def filler(self, count: int) -> Iterator[Any]:
        """``count`` more documents; filler ordinal j belongs to user j // 20, review j cycled."""
        probe_total = sum(PROBES.values())
        for _ in range(count):
            j = self.n - probe_total
            yield self._doc(f"scale:filler:{j // FILLER_DOCS_PER_USER}", self.reviews[j % len(self.reviews)])


def write_chunks(store: Any, docs: Iterator[Any]) -> int:
    """Write ``docs`` in transactions of ``CHUNK`` records; returns how many were written."""
    written = 0
    while True:
        chunk = [d for _, d in zip(range(CHUNK), docs, strict=False)]
        if not chunk:
            return written
        with store.writer(source="bench_scale") as w:
            w.add_all(chunk)
        written += len(chunk)


def precompute_probe_vectors(store: Any, emb: Any, corpus: Corpus, cache: Path | None) -> dict[str, Any]:
    """Embed the probes' distinct texts once (cached as .npy) and write their vectors to the store."""
    texts = list(dict.fromkeys(r["text"] for rows in corpus.probe_docs.values() for _, r in rows))
    start = time.perf_counter()
    mat, source = bo.cached_embeddings(emb, texts, cache, prefix="tailorlm-scale")
    row = {t: i for i, t in enumerate(texts)}
    for user, rows in corpus.probe_docs.items():
        store.put_embeddings(
            user_id=user,
            model=emb.name,
            version=emb.version,
            doc_ids=[f"doc:{d}" for d, _ in rows],
            vectors=mat[[row[r["text"]] for _, r in rows]],
            texts=[r["text"] for _, r in rows],
        )
    return {"distinct_texts": len(texts), "source": source, "seconds": round(time.perf_counter() - start, 1)}


# -- PostgreSQL -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A PostgreSQL server for the run: ``--pg-url``, a throwaway Debian cluster, or ``pgserver``.

    ``base`` is a SQLAlchemy URL without a database (maybe with ``?host=`` for a socket).
    """

    def __init__(self, base: str, stop: Any = None, how: str = "") -> None:
        self.base, self._stop, self.how = base, stop, how

    @classmethod
    def start(cls, pg_url: str | None, work: Path) -> PgServer:
        """Raises RuntimeError with the reason when no server can be had."""
        if pg_url:
            return cls(pg_url.rstrip("/"), how="--pg-url")
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if bins:
            return cls._debian(Path(bins[-1]).parent, work)
        try:
            import pgserver
        except ImportError as exc:
            raise RuntimeError(
                "no server binaries (/usr/lib/postgresql/*/bin/initdb), no pgserver, no --pg-url"
            ) from exc
        server = pgserver.get_server(work / "pgserver", cleanup_mode="delete")
        host = server.get_uri().split("host=", 1)[1]
        return cls(f"postgresql+psycopg://postgres@/?host={host}", stop=server.cleanup, how="pgserver")

    @classmethod
    def _debian(cls, bindir: Path, work: Path) -> PgServer:
        tmp = work / "pg"
        tmp.mkdir()
        as_pg: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as postgres
            os.chmod(work, 0o755)
            shutil.chown(tmp, user="postgres")
            as_pg = ["runuser", "-u", "postgres", "--"]
        port, data = _free_port(), tmp / "data"
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        try:
            subprocess.run(
                [*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w", "-o", opts, "start"],
                check=True,
                capture_output=True,
            )
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[-500:]
            raise RuntimeError(f"could not start a throwaway cluster: {exc} {detail}") from exc

        def stop() -> None:
            subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)

        return cls(f"postgresql+psycopg://postgres@127.0.0.1:{port}", stop=stop, how=f"initdb ({bindir})")

    def _conninfo(self, database: str) -> str:
        base, _, query = self.base.partition("/?")
        base = base.replace("postgresql+psycopg://", "postgresql://")
        return f"{base}/{database}" + (f"?{query}" if query else "")

    def create_database(self) -> tuple[str, str]:
        """(name, SQLAlchemy URL) of a fresh database."""
        import psycopg

        name = f"tailorlm_scale_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name, self._conninfo(name).replace("postgresql://", "postgresql+psycopg://", 1)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()


def disk_bytes(store: Any, backend: str, sqlite_file: Path | None) -> int:
    if backend == "sqlite":
        assert sqlite_file is not None
        return sum(p.stat().st_size for p in sqlite_file.parent.glob(sqlite_file.name + "*"))  # db, -wal, -shm
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def server_version(store: Any, backend: str) -> str:
    if backend == "sqlite":
        import sqlite3

        return sqlite3.sqlite_version
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar_one())


# -- measuring ------------------------------------------------------------------------------------


def time_cell(method: Any, user: str, queries: Sequence[Any]) -> list[float]:
    for q in queries[:WARMUP]:
        method.personalize(user, q)
    times = []
    for q in queries[WARMUP:]:
        t = time.perf_counter()
        method.personalize(user, q)
        times.append(time.perf_counter() - t)
    return times


def run_store(
    backend: str,
    url: str,
    reviews: list[dict[str, Any]],
    sizes: Sequence[int],
    specs: Sequence[str],
    queries: Sequence[Any],
    emb: Any,
    args: argparse.Namespace,
    sqlite_file: Path | None = None,
) -> dict[str, Any]:
    """Grow one store through ``sizes``, measuring after each increment."""
    from tailorlm.data import Store
    from tailorlm.data._user_cache import UserCache
    from tailorlm.personalize import parse_method_spec

    store = Store(url, files_dir=args.work_dir / f"files-{backend}")
    corpus = Corpus(reviews)
    rows, loads = [], []
    out: dict[str, Any] = {"backend": backend, "version": server_version(store, backend)}
    try:
        for size in sizes:
            before = corpus.n
            start = time.perf_counter()
            written = write_chunks(store, corpus.probes()) if before == 0 else 0
            if written and emb is not None:  # vectors of the probes, before the first measurement
                out["embedder"] = {"name": emb.name, "version": emb.version, "dim": emb.dim}
                vec_start = time.perf_counter()
                out["embedder"] |= precompute_probe_vectors(store, emb, corpus, args.emb_cache)
                start += time.perf_counter() - vec_start  # not part of the load
            docs = iter(corpus.filler(size - corpus.n))
            while True:  # in slices, to print progress
                n = write_chunks(store, (d for _, d in zip(range(10 * CHUNK), docs, strict=False)))
                written += n
                if n == 0:
                    break
                rate = written / max(time.perf_counter() - start, 1e-9)
                print(f"[{backend}] {corpus.n:>12,} / {size:,} documents  ({rate:,.0f} docs/s)", file=sys.stderr)
            seconds = time.perf_counter() - start
            count = store.counts()["documents"]
            assert count == size == corpus.n, f"store holds {count} documents, expected {size}"
            size_bytes = disk_bytes(store, backend, sqlite_file)
            loads.append(
                {
                    "store": backend,
                    "from": before,
                    "to": size,
                    "documents": written,
                    "seconds": round(seconds, 1),
                    "docs_per_s": round(written / seconds) if seconds > 0 else None,
                    "disk_bytes": size_bytes,
                }
            )
            for spec, cache in ((sp, c) for sp in specs for c in args.history_cache):
                # "on": the store's per-process history cache (valid while the user's data version
                # holds); "off": every request reads and parses the user's rows, as before it existed.
                store.user_cache = UserCache(HISTORY_CACHE_ENTRIES if cache == "on" else 0)
                fit_start = time.perf_counter()
                method = parse_method_spec(spec, collaborators={"embedder": emb}).fit(store)
                fit_s = time.perf_counter() - fit_start
                for user, items in PROBES.items():
                    times = time_cell(method, user, queries)
                    row = {
                        "store": backend,
                        "size": size,
                        "method": spec,
                        "history_cache": cache,
                        "user_items": items,
                        "p50_ms": bo.ms(times, 50),
                        "p99_ms": bo.ms(times, 99),
                        "n": len(times),
                        "store_documents": count,
                        "disk_bytes": size_bytes,
                        "fit_s": round(fit_s, 3),
                    }
                    rows.append(row)
                    print(
                        f"[{backend}] {size_label(size):>5} docs  {spec:10s} cache {cache:3s} {items:>5} items  "
                        f"p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  (n={row['n']})",
                        file=sys.stderr,
                    )
    finally:
        store.close()
    return out | {"rows": rows, "loads": loads}


def ratios(rows: Sequence[dict[str, Any]], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """p99 at the largest size over p99 at the smallest, per (store, method, cache, user_items)."""
    lo, hi = min(sizes), max(sizes)
    key = f"p99_{size_label(hi)}_over_{size_label(lo)}"
    cell = ("store", "method", "history_cache", "user_items")
    by = {(*(r.get(c, "off") for c in cell), r["size"]): r["p99_ms"] for r in rows}
    out = []
    for parts in dict.fromkeys(tuple(r.get(c, "off") for c in cell) for r in rows):
        a, b = by.get((*parts, lo)), by.get((*parts, hi))
        if a and b is not None:
            out.append(dict(zip(cell, parts, strict=True)) | {key: round(b / a, 2)})
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Personalization overhead as the store grows",
        "",
        f"{report['date']}, {m['platform']}, {m['cpu_count']} CPUs (load {m['loadavg_1min_at_start']} at start). "
        f"Real Amazon reviews cycled over synthetic users; probes with 100 and 1,000 reviews; "
        f"{WARMUP} warm-up + {report['config']['queries']} timed queries per cell; no generation.",
        "",
        "| store | documents | on disk MB | method | history cache | user items | n | p50 ms | p99 ms |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['store']} | {r['size']:,} | {r['disk_bytes'] / 2**20:,.1f} | {r['method']} "
            f"| {r.get('history_cache', 'off')} | {r['user_items']:,} | {r['n']} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    if report["ratios"]:
        key = next(k for k in report["ratios"][0] if k.startswith("p99_"))
        lines += ["", f"| store | method | history cache | user items | {key} |", "|---|---|---|---:|---:|"]
        for r in report["ratios"]:
            lines.append(
                f"| {r['store']} | {r['method']} | {r['history_cache']} | {r['user_items']:,} | {r[key]:.2f} |"
            )
    lines += ["", "| store | from | to | seconds | docs/s | on disk MB |", "|---|---:|---:|---:|---:|---:|"]
    for r in report["loads"]:
        rate = f"{r['docs_per_s']:,}" if r["docs_per_s"] is not None else ""
        lines.append(
            f"| {r['store']} | {r['from']:,} | {r['to']:,} | {r['seconds']} | {rate} | {r['disk_bytes'] / 2**20:,.1f} |"
        )
    for s in report["skipped"]:
        lines += ["", f"Skipped {s['store']}: {s['reason']}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    p.add_argument("--sizes", default="10000,1000000,10000000", help="store sizes in documents, increasing")
    p.add_argument("--stores", default="sqlite,postgresql")
    p.add_argument("--methods", default="rag-bm25,rag-dense", help="specs for parse_method_spec")
    p.add_argument("--queries", type=int, default=50, help="timed queries per (size, store, method, probe)")
    p.add_argument(
        "--history-cache",
        default="on,off",
        help="measure with the store's history cache on, off, or both (on,off)",
    )
    p.add_argument("--pg-url", default=None, help="existing PostgreSQL server (URL without database)")
    p.add_argument("--work-dir", type=Path, default=None, help="where the stores live (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the stores (and the PostgreSQL database) at the end")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the query embedder (1 on a busy small machine: see the docstring)",
    )
    p.add_argument("--emb-cache", type=Path, default=Path(tempfile.gettempdir()), help="folder for probe vectors")
    args = p.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    specs = [s.strip() for s in args.methods.split(",") if s.strip()]
    args.history_cache = [c.strip() for c in args.history_cache.split(",") if c.strip()]
    if not args.history_cache or set(args.history_cache) - {"on", "off"}:
        p.error(f"--history-cache takes on, off or on,off, got {args.history_cache}")
    if unknown := set(stores) - {"sqlite", "postgresql"}:
        p.error(f"unknown stores {sorted(unknown)}")
    if sizes[0] < sum(PROBES.values()):
        p.error(f"the smallest size must hold the probes' {sum(PROBES.values())} documents")

    path = bo.reviews_path()
    reviews = load_timed_reviews(path)
    if reviews is None:
        print(f"skipping: the review data set is not at {path} (set TAILORLM_SHARED_DATA)")
        return 0
    history = max(PROBES.values())
    if len(reviews) < history + WARMUP + args.queries:
        p.error(f"{len(reviews)} reviews: too few for {history} history documents plus the queries")

    from tailorlm.personalize import Query

    # Queries: whole review texts from the end of the file backwards, none in the probes' history.
    queries = [Query(reviews[len(reviews) - 1 - j]["text"], task="amazon-title") for j in range(WARMUP + args.queries)]
    emb = None
    if any("dense" in s or "hybrid" in s for s in specs):
        from tailorlm.models import SentenceTransformerEmbedder

        if args.torch_threads:
            import torch

            torch.set_num_threads(args.torch_threads)
        emb = SentenceTransformerEmbedder()

    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": bo.machine_info(),
    }
    own_work = args.work_dir is None
    args.work_dir = Path(tempfile.mkdtemp(prefix="tailorlm-scale-")) if own_work else args.work_dir
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results, skipped = [], []
    wall = time.perf_counter()
    try:
        for backend in stores:
            if backend == "sqlite":
                db = args.work_dir / "scale.db"
                results.append(run_store("sqlite", f"sqlite:///{db}", reviews, sizes, specs, queries, emb, args, db))
                if not args.keep:
                    for f in args.work_dir.glob("scale.db*"):
                        f.unlink()
                continue
            try:
                server = PgServer.start(args.pg_url, args.work_dir)
            except Exception as exc:  # any start failure: skip PostgreSQL with the reason
                print(f"skipping postgresql: {exc}", file=sys.stderr)
                skipped.append({"store": "postgresql", "reason": str(exc)})
                continue
            name = None
            try:
                name, url = server.create_database()
                result = run_store("postgresql", url, reviews, sizes, specs, queries, emb, args)
                results.append(result | {"server": server.how, "database": name})
            finally:
                if name is not None and not args.keep:
                    server.drop_database(name)
                server.stop()  # with --keep, a throwaway cluster's data dir stays in the work dir
    finally:
        if own_work and not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)

    rows = [r for res in results for r in res["rows"]]
    report |= {
        "config": {
            "sizes": sizes,
            "stores": stores,
            "methods": specs,
            "history_cache": args.history_cache,
            "history_cache_entries": HISTORY_CACHE_ENTRIES,
            "queries": args.queries,
            "warmup": WARMUP,
            "task": "amazon-title",
            "probes": PROBES,
            "filler_docs_per_user": FILLER_DOCS_PER_USER,
            "chunk_records": CHUNK,
            "percentiles": "numpy linear interpolation over the timed queries",
            "ann_recall": "not measured here; see benchmarks/bench_ann.py",
        },
        "stores": [{k: v for k, v in res.items() if k not in ("rows", "loads")} for res in results],
        "rows": rows,
        "ratios": ratios(rows, sizes),
        "loads": [load for res in results for load in res["loads"]],
        "skipped": skipped,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    report["machine"]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    print(f"written to {args.out} and {args.out.with_suffix('.md')}")
    if args.keep:
        print(f"stores kept in {args.work_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
