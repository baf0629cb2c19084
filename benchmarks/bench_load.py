"""Load throughput: the Amazon reviews into the store, then with embeddings of every document.

Usage:
    python benchmarks/bench_load.py [--data FILE] [--store-url URL] [--out JSON] [--no-embed]

Measures, on one store:

1. ``load``: ``load_dataset(store, "amazon", FILE)`` (parse, validate, write users,
   reviews, ratings and task examples in one transaction): records/s and reviews/s;
2. ``reload``: the same file again (every row an upsert that changes nothing);
3. ``embed``: every user's documents embedded with ``SentenceTransformerEmbedder``
   (all-MiniLM-L6-v2, 384 dims) and stored with ``store.put_embeddings`` per user:
   documents/s, split into model time and store time;
4. ``load + embed``: the two together, as records/s of the load's records.

Prints a Markdown table and writes the figures (with the machine) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (
    Path(os.environ.get("TAILORLM_SHARED_DATA") or REPO.parent / "shared" / "data")
    / "amazon-musical-instruments"
    / "reviews_Musical_Instruments_5.json.gz"
)


def _machine() -> dict:
    import numpy

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "numpy": numpy.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Amazon reviews JSON lines (gz or plain)")
    ap.add_argument("--store-url", default=None, help="SQLAlchemy URL (default: a temporary SQLite file)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "load.json")
    ap.add_argument("--no-embed", action="store_true", help="measure the load only")
    ap.add_argument("--embed-batch", type=int, default=64, help="embedder batch size")
    ap.add_argument(
        "--per-user-embed",
        action="store_true",
        help="one embed() call per user instead of one for all documents",
    )
    args = ap.parse_args(argv)

    if not args.data.is_file():
        print(f"no data at {args.data} (pass --data or set TAILORLM_SHARED_DATA)", file=sys.stderr)
        return 2

    from tailorlm.data import Store
    from tailorlm.data.loaders import load_dataset

    tmp = None
    url = args.store_url
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="tailorlm-bench-")
        url = f"sqlite:///{tmp.name}/bench.db"
    store = Store(url)
    before = store.counts()
    if any(before[k] for k in ("documents", "examples", "embeddings")):
        print(f"warning: the store is not empty: {before}", file=sys.stderr)

    rows: list[dict] = []
    report = load_dataset(store, "amazon", args.data)
    docs = report.added["documents"]
    rows.append(
        {
            "step": "load",
            "seconds": report.seconds,
            "records": report.records,
            "records_per_s": report.records / report.seconds,
            "docs": docs,
            "docs_per_s": docs / report.seconds,
        }
    )
    again = load_dataset(store, "amazon", args.data)
    rows.append(
        {
            "step": "reload (no-op upserts)",
            "seconds": again.seconds,
            "records": again.records,
            "records_per_s": again.records / again.seconds,
            "docs": docs,
            "docs_per_s": docs / again.seconds,
        }
    )

    result: dict = {
        "benchmark": "load",
        "data": str(args.data),
        "sha256": report.sha256,
        "store": url.split(":", 1)[0] if tmp is None else "sqlite (temporary file)",
        "counts": report.added,
        "machine": _machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    if not args.no_embed:
        from tailorlm.models import SentenceTransformerEmbedder

        t0 = time.perf_counter()
        embedder = SentenceTransformerEmbedder(batch_size=args.embed_batch)
        model_load = time.perf_counter() - t0
        t_model = t_store = 0.0
        n = 0
        t_all = time.perf_counter()
        per_user = {u: store.get_documents(user_id=u) for u in store.list_users()}
        per_user = {u: d for u, d in per_user.items() if d}
        texts_of = {u: [d.text if d.text.strip() else (d.title or "") for d in ds] for u, ds in per_user.items()}
        if args.per_user_embed:  # one embed() call per user: small batches, like a live service
            vectors_of = {}
            for u, texts in texts_of.items():
                t1 = time.perf_counter()
                vectors_of[u] = embedder.embed(texts)
                t_model += time.perf_counter() - t1
        else:  # one call for everything (length-sorted batches), then split per user
            t1 = time.perf_counter()
            flat = embedder.embed([t for texts in texts_of.values() for t in texts])
            t_model += time.perf_counter() - t1
            vectors_of, i = {}, 0
            for u, texts in texts_of.items():
                vectors_of[u], i = flat[i : i + len(texts)], i + len(texts)
        for u, user_docs in per_user.items():
            t2 = time.perf_counter()
            store.put_embeddings(
                user_id=u,
                model=embedder.name,
                version=embedder.version,
                doc_ids=[d.doc_id for d in user_docs],
                vectors=vectors_of[u],
                texts=texts_of[u],
            )
            t_store += time.perf_counter() - t2
            n += len(user_docs)
        embed_s = time.perf_counter() - t_all
        assert store.counts()["embeddings"] == n == docs, (store.counts(), n, docs)
        mode = "an embed() call per user" if args.per_user_embed else "one embed() call"
        rows.append(
            {
                "step": f"embed ({mode}; put_embeddings per user)",
                "seconds": embed_s,
                "records": n,
                "records_per_s": n / embed_s,
                "docs": n,
                "docs_per_s": n / embed_s,
            }
        )
        total = report.seconds + embed_s
        rows.append(
            {
                "step": "load + embed",
                "seconds": total,
                "records": report.records + n,
                "records_per_s": report.records / total,
                "docs": docs,
                "docs_per_s": docs / total,
            }
        )
        result["embedder"] = {
            "name": embedder.name,
            "version": embedder.version,
            "dim": embedder.dim,
            "per_user_embed": args.per_user_embed,
            "batch_size": args.embed_batch,
            "model_load_s": model_load,
            "model_s": t_model,
            "store_s": t_store,
        }
    result["rows"] = rows

    print(f"\nAmazon Musical Instruments ({docs:,} reviews, {report.records:,} records) -> {result['store']}\n")
    print("| step | seconds | records | records/s | reviews/s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['step']} | {r['seconds']:.2f} | {r['records']:,} | {r['records_per_s']:,.0f} "
            f"| {r['docs_per_s']:,.0f} |"
        )
    if "embedder" in result:
        e = result["embedder"]
        print(
            f"\nembedder {e['name']} {e['version']} ({e['dim']} dims): model {e['model_s']:.1f} s, "
            f"put_embeddings {e['store_s']:.2f} s, "
            f"model load {e['model_load_s']:.1f} s (not counted)"
        )
    print("load + embed records/s = the load's records over the sum of both times.")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    store.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
