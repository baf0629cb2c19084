"""Benchmark the store's ANN index (pgvector HNSW) against exact search for cross-user retrieval.

For N = 10,000 and 100,000 unit vectors of dimension 384 (the all-MiniLM-L6-v2 size),
spread over 1,000 users and written with ``Store.put_embeddings`` into a PostgreSQL 16 +
pgvector server started by the ``pgserver`` package, in two distributions:

- ``clustered``: 1,000 topic centres, each vector its centre plus Gaussian noise
  (cosine to the centre about 0.7), queries drawn the same way: like sentence
  embeddings of reviews, where a query's neighbours are clearly closer than the rest;
- ``uniform``: uniform on the sphere, queries too: the worst case for a graph index
  (in 384 dimensions every point is nearly equidistant from a query, so the top 10
  barely stand out), reported so the figure is not only the flattering one;
- ``real``: real text embedded with the project's embedder (all-MiniLM-L6-v2): every
  distinct Amazon review text and title and Persona-Chat line in ``--data-dir`` (about
  36,000 texts), queries a seeded sample of them held out of the indexed set; N is capped
  at what is left (the matrix is cached as .npy in ``--emb-cache``);

it reports:

- ``build_s``: the first ``Store.nearest`` call (side table, copy, HNSW build);
- for each ``hnsw.ef_search``: recall@10 of HNSW against exact search (ground truth:
  a numpy matrix product over all vectors) and p50/p99 latency per query;
- exact search as the store does it without an index (``nearest(..., exact=True)``:
  read the model's vectors, one matrix product) and in memory (the matrix product alone,
  vectors already loaded: what a process holding every vector would pay).

Usage: ``python benchmarks/bench_ann.py --out benchmarks/results/ann.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from tailorlm.data import Store

MODEL = "bench-384"
DIM = 384
USERS = 1000
K = 10


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _sample(rng: np.random.Generator, n: int, n_queries: int, dist: str) -> tuple[np.ndarray, np.ndarray]:
    """(data, queries) for one distribution; clustered queries come from the same topics."""
    if dist == "real":
        return _real(rng, n, n_queries)
    if dist == "uniform":
        return _unit(rng, n), _unit(rng, n_queries)
    centres = _unit(rng, 1000)
    noise_scale = 1.0 / np.sqrt(DIM)  # noise of norm ~1 around a unit centre: cosine ~0.7

    def draw(m: int) -> np.ndarray:
        v = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, DIM)).astype(np.float32) * noise_scale
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(n_queries)


_REAL: dict[str, np.ndarray] = {}


def real_texts(data_dir: Path) -> list[str]:
    """Distinct real texts: Amazon review bodies and titles, Persona-Chat persona lines and turns."""
    import gzip

    texts: list[str] = []
    with gzip.open(data_dir / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            texts += [r.get("reviewText", ""), r.get("summary", "")]
    for line in (data_dir / "personachat" / "valid_self_original_no_cands.txt").read_text().splitlines():
        body = line.split(" ", 1)[1] if " " in line else ""
        texts += body.removeprefix("your persona: ").split("\t")[:2]
    return list(dict.fromkeys(t.strip() for t in texts if len(t.strip()) >= 3))


def _real(rng: np.random.Generator, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    vecs = _REAL["vectors"]
    order = rng.permutation(len(vecs))
    queries, rest = order[:n_queries], order[n_queries:]
    return vecs[rest[:n]], vecs[queries]


def _pct(xs: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(xs, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(xs, 99)) * 1000, 2),
    }


def _timed(fn, queries: np.ndarray) -> tuple[list, list[float]]:
    out, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t0)
    return out, times


def run_size(url: str, n: int, dist: str, *, n_queries: int, n_exact_store: int, efs: list[int], seed: int) -> dict:
    """Load ``n`` vectors into a fresh database, build the index, measure recall and latency."""
    rng = np.random.default_rng(seed)
    vecs, queries = _sample(rng, n, n_queries, dist)
    n = len(vecs)  # real text: at most what the data holds
    store = Store(url, files_dir=tempfile.mkdtemp())
    t0 = time.perf_counter()
    for u in range(USERS):
        idx = np.arange(u, n, USERS)
        store.put_embeddings(
            user_id=f"u{u}", model=MODEL, version="1", doc_ids=[f"d{i}" for i in idx], vectors=vecs[idx]
        )
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.nearest(MODEL, queries[0], K)  # first call: side table, copy, HNSW build
    build_s = time.perf_counter() - t0
    truth = [set(np.argsort(-(vecs @ q))[:K].tolist()) for q in queries]
    _, mem_times = _timed(lambda q: np.argpartition(-(vecs @ q), K)[:K], queries)
    _, store_exact_times = _timed(lambda q: store.nearest(MODEL, q, K, exact=True), queries[:n_exact_store])
    rows = []
    for ef in efs:
        store.ann.ef_search = ef
        hits, times = _timed(lambda q: store.nearest(MODEL, q, K), queries)
        found = [{int(h.doc_id[1:]) for h in hs} for hs in hits]
        recall = float(np.mean([len(f & t) / K for f, t in zip(found, truth, strict=True)]))
        rows.append({"ef_search": ef, "recall_at_10": round(recall, 4), **_pct(times)})
    store.close()
    return {
        "n": n,
        "distribution": dist,
        "dim": DIM,
        "users": USERS,
        "queries": n_queries,
        "load_s": round(load_s, 1),
        "build_s": round(build_s, 1),
        "hnsw": {"m": store.ann.m, "ef_construction": store.ann.ef_construction, "by_ef_search": rows},
        "exact_store": {"queries": n_exact_store, **_pct(store_exact_times)},
        "exact_in_memory": _pct(mem_times),
    }


def _markdown(result: dict) -> str:
    lines = [
        "# ANN index (pgvector HNSW) vs exact search",
        "",
        f"{result['date']}, {result['machine']['platform']}, {result['machine']['cpus']} CPUs, "
        f"PostgreSQL {result['server']}, pgvector {result['pgvector']}. Synthetic unit vectors, dim {DIM}, "
        f"k = {K}, {USERS} users; HNSW m = {result['sizes'][0]['hnsw']['m']}, "
        f"ef_construction = {result['sizes'][0]['hnsw']['ef_construction']}. "
        "Build: the first search (side table, copy, index).",
        "",
        "| data | N | build s | ef_search | recall@10 | HNSW p50 ms | HNSW p99 ms | exact (store) p50 / p99 ms "
        "| exact (in memory) p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in result["sizes"]:
        es, em = size["exact_store"], size["exact_in_memory"]
        for row in size["hnsw"]["by_ef_search"]:
            lines.append(
                f"| {size['distribution']} | {size['n']:,} | {size['build_s']} | {row['ef_search']} "
                f"| {row['recall_at_10']:.3f} "
                f"| {row['p50_ms']} | {row['p99_ms']} | {es['p50_ms']} / {es['p99_ms']} "
                f"| {em['p50_ms']} / {em['p99_ms']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ann.json"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--exact-store-queries", type=int, default=20)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[40, 100, 200, 400, 800])
    ap.add_argument("--distributions", nargs="+", default=["clustered", "uniform"], help="clustered uniform real")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="for 'real': the shared data")
    ap.add_argument("--emb-cache", type=Path, default=Path(tempfile.gettempdir()), help="for 'real': .npy cache")
    args = ap.parse_args()
    if "real" in args.distributions:
        import bench_overhead as overhead  # a sibling script: its folder is first on sys.path

        from tailorlm.models import build_embedder
        from tailorlm.settings import load_settings

        texts = real_texts(args.data_dir)
        t0 = time.perf_counter()
        emb = build_embedder(load_settings())
        mat, source = overhead.cached_embeddings(emb, texts, args.emb_cache, prefix="tailorlm-ann-real")
        _REAL["vectors"] = np.asarray(mat, dtype=np.float32)
        print(f"real: {len(texts)} texts, {source}, {time.perf_counter() - t0:.0f} s", flush=True)

    import pgserver
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="bench-ann-"))
    server = pgserver.get_server(tmp / "data", cleanup_mode="delete")
    host = server.get_uri().split("host=", 1)[1]
    sizes = []
    try:
        runs = [(dist, n) for dist in args.distributions for n in args.sizes]
        for i, (dist, n) in enumerate(runs):
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE ann_{i}")
            url = f"postgresql+psycopg://postgres@/ann_{i}?host={host}"
            size = run_size(
                url, n, dist, n_queries=args.queries, n_exact_store=args.exact_store_queries, efs=args.ef_search, seed=i
            )
            sizes.append(size)
            print(json.dumps(size), flush=True)
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f"DROP DATABASE ann_{i}")  # disk: 100k x 384 floats, twice (bytes + vector)
        with psycopg.connect(server.get_uri()) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            pgv = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()[
                0
            ]
    finally:
        server.cleanup()
    result = {
        "date": dt.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "server": version,
        "pgvector": pgv,
        "sizes": sizes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
