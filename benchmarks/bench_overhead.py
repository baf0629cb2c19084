"""Benchmark personalization overhead: retrieval plus prompt building per request, no generation.

For one user with 10, 100, 1,000 and 10,000 documents (real Amazon musical-instrument
reviews, cycled if the set is smaller) in a SQLite store in a temp file, it times
``personalize(user_id, Query(review, task="amazon-title"))`` for ``rag-bm25`` and
``rag-dense`` built by :func:`~tailorlm.personalize.parse_method_spec` and fitted on the
store, and reports p50/p99 latency plus a breakdown per request:

- ``store_read``: ``load_history`` (SQL query and row mapping);
- ``rank``: the ranker (for dense this includes embedding the query, reported apart as
  ``query_embed``; the entries' vectors are pre-computed and written to the store before
  timing, and the warm-up queries load them into the ranker's in-memory cache);
- ``render``: prompt rendering under the token budget;
- ``other``: the rest (scope decision, context items).

Plain ``rag-*`` rows run ``src`` as it is (a BM25 index cached per exact candidate set,
queried without a thread pool; a lean column read). The row marked "baseline" swaps in
the request path as first written (``RebuildBM25Ranker``: a BM25 index built on every
call and queried through a one-thread pool; ``orm_load_history``: documents read as
validated ``Document`` records with every column), so the gain stays measurable.

It also reports prompt tokens per request (``approx_tokens`` of the messages) for
``rag-bm25`` with k=4 against quoting the whole eligible history, and where the time of
one uncached BM25 call goes (tokenize, index, query).

Usage: ``python benchmarks/bench_overhead.py --out benchmarks/results/overhead.json``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import hashlib
import importlib
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from tailorlm.retrieval import BM25Ranker, HistoryEntry, Retrieved, load_history
from tailorlm.retrieval.base import check_k
from tailorlm.retrieval.bm25 import _entry_text  # the text BM25Ranker indexes (bm25_stages times its steps)

REPO = Path(__file__).resolve().parents[1]
REVIEWS_DIR = "amazon-musical-instruments"
REVIEWS_FILE = "reviews_Musical_Instruments_5.json.gz"
T0 = 1_300_000_000  # the first history document's timestamp; one document a minute after it
TARGET_MS = 10.0
TARGET_ITEMS = 1_000


def reviews_path() -> Path:
    base = Path(os.environ.get("TAILORLM_SHARED_DATA", REPO.parent / "shared" / "data"))
    return base / REVIEWS_DIR / REVIEWS_FILE


def load_reviews(path: Path) -> list[dict[str, Any]] | None:
    """Reviews with a non-empty text, in file order; None when the file is absent."""
    if not path.is_file():
        return None
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            text = (r.get("reviewText") or "").strip()
            if text:
                out.append(
                    {"text": text, "summary": (r.get("summary") or "").strip() or None, "rating": r.get("overall")}
                    | {"asin": r.get("asin")}
                )
    return out


def machine_info() -> dict[str, Any]:
    import bm25s
    import sqlalchemy

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "bm25s": bm25s.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        # Other processes on a small shared machine skew every figure; this records how busy it was.
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


# -- the store -------------------------------------------------------------------------------


def user_of(size: int) -> str:
    return f"user-{size}"


def doc_rows(reviews: list[dict[str, Any]], size: int) -> list[tuple[str, dict[str, Any]]]:
    """(doc_id, review) for the ``size`` documents of the user with ``size`` items."""
    return [(f"{size}-{i}", reviews[i % len(reviews)]) for i in range(size)]


def populate(store: Any, reviews: list[dict[str, Any]], sizes: Sequence[int]) -> None:
    from tailorlm.data import Document

    for size in sizes:
        store.add(
            Document(
                user_id=user_of(size),
                doc_id=doc_id,
                doc_kind="review",
                text=r["text"],
                title=r["summary"],
                rating=r["rating"],
                item_id=r["asin"],
                timestamp=T0 + 60 * i,
            )
            for i, (doc_id, r) in enumerate(doc_rows(reviews, size))
        )


def cached_embeddings(emb: Any, texts: Sequence[str], cache: Path | None, *, prefix: str) -> tuple[Any, str]:
    """``emb.embed(texts)``, kept in ``cache`` as an .npy file keyed by model, version and texts
    (re-running a benchmark should not re-embed thousands of reviews on a CPU); and where it came from."""
    digest = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:12]
    path = cache / f"{prefix}-{emb.name}-{emb.version}-{digest}.npy" if cache else None
    if path is not None and path.is_file():
        return np.load(path), f"cache file {path}"
    mat = emb.embed(list(texts))
    if path is not None:
        np.save(path, mat)
    return mat, "embedded now"


def precompute_vectors(
    store: Any, emb: Any, reviews: list[dict[str, Any]], sizes: Sequence[int], cache: Path | None
) -> dict[str, Any]:
    """Embed every distinct history text once and write each user's vectors to the store.

    The matrix is kept in ``cache`` (an .npy file keyed by model, version and texts) so that
    re-running the benchmark does not re-embed ten thousand reviews on a CPU.
    """
    texts = list(dict.fromkeys(r["text"] for size in sizes for _, r in doc_rows(reviews, size)))
    start = time.perf_counter()
    mat, source = cached_embeddings(emb, texts, cache, prefix="tailorlm-overhead")
    embed_s = time.perf_counter() - start
    row = {t: i for i, t in enumerate(texts)}
    for size in sizes:
        docs = doc_rows(reviews, size)
        store.put_embeddings(
            user_id=user_of(size),
            model=emb.name,
            version=emb.version,
            doc_ids=[f"doc:{d}" for d, _ in docs],
            vectors=mat[[row[r["text"]] for _, r in docs]],
            texts=[r["text"] for _, r in docs],
        )
    return {"distinct_texts": len(texts), "source": source, "seconds": round(embed_s, 1)}


# -- the baseline: the request path as first written, kept measurable ---------------------------


class RebuildBM25Ranker(BM25Ranker):
    """The baseline: ``BM25Ranker`` as first written, building a fresh index on every call.

    Reproduced here (tokenize, index, ``n_threads=1``) so the cost of the rebuild stays
    measurable whatever caching ``src`` adds.
    """

    def rank(self, entries: Sequence[HistoryEntry], *, query: str, k: int) -> list[Retrieved]:
        import bm25s

        check_k(k)
        if not entries:
            return []
        corpus = bm25s.tokenize([_entry_text(e) for e in entries], stopwords=self.stopwords, show_progress=False)
        index = bm25s.BM25(k1=self.k1, b=self.b)
        index.index(corpus, show_progress=False)
        q = bm25s.tokenize([query], stopwords=self.stopwords, show_progress=False)
        if not q.vocab:
            return []
        ids, scores = index.retrieve(q, k=min(k, len(entries)), show_progress=False, n_threads=1)
        hits = [Retrieved(entries[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True)]
        return [h for h in hits if h.score > 0]


def orm_load_history(store: Any, *, user_id: str, source: str = "documents", **kw: Any) -> list[HistoryEntry]:
    """Baseline: ``load_history`` as first written, documents read through ``Store.get_documents``.

    Every column is selected (the ``metadata`` JSON decoded per row) and each row becomes a
    validated pydantic ``Document`` before it becomes a :class:`HistoryEntry`.
    """
    if source != "documents":
        return load_history(store, user_id=user_id, source=source, **kw)  # type: ignore[arg-type]
    docs = store.get_documents(
        user_id=user_id, doc_kind=kw.get("doc_kind"), before=kw.get("before"), exclude_ids=kw.get("exclude_ids") or ()
    )
    skip = set(kw.get("exclude_items") or ())
    return [
        HistoryEntry(f"doc:{d.doc_id}", user_id, d.text, d.doc_kind, d.timestamp, d.rating, d.title, d.item_id)
        for d in docs
        if d.item_id is None or d.item_id not in skip
    ]


# -- timing ------------------------------------------------------------------------------------


class Stopwatch:
    """Per-request stage timings, filled by wrapped functions."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[stage] = self.current.get(stage, 0.0) + time.perf_counter() - start

        return timed


class TimedRanker:
    def __init__(self, inner: Any, sw: Stopwatch) -> None:
        self.inner, self.name = inner, inner.name
        self.rank = sw.wrap("rank", inner.rank)


class TimedEmbedder:
    """Times ``embed`` and counts the texts embedded (only queries, once vectors are cached)."""

    def __init__(self, inner: Any, sw: Stopwatch) -> None:
        self.inner, self.name, self.version, self.dim = inner, inner.name, inner.version, inner.dim
        self.texts = 0
        self._embed = sw.wrap("query_embed", inner.embed)

    def embed(self, texts: Sequence[str]) -> Any:
        self.texts += len(texts)
        return self._embed(texts)


@contextmanager
def instrumented(method: Any, sw: Stopwatch, *, read: Callable[..., Any] | None) -> Iterator[TimedEmbedder | None]:
    """Wrap the store read (replaced by ``read`` if given), the ranker, the query embedder and rendering."""
    # import_module: the package attribute ``tailorlm.personalize.render`` is the function, not the module.
    retrieval = importlib.import_module("tailorlm.retrieval")
    rag_module = importlib.import_module("tailorlm.personalize.rag.method")
    render_module = importlib.import_module("tailorlm.personalize.render")

    timed_read = sw.wrap("store_read", read or retrieval.load_history)
    # Methods look load_history up on the package at call time (eligible_history), or imported
    # it by name (older code): patch both places, so either way each read is timed once.
    patches = [mock.patch.object(retrieval, "load_history", timed_read)]
    if hasattr(rag_module, "load_history"):
        patches.append(mock.patch.object(rag_module, "load_history", timed_read))
    patches.append(mock.patch.object(render_module, "render", sw.wrap("render", render_module.render)))
    ranker = method.ranker_
    inner = getattr(ranker, "embedder", None)
    timed_emb = TimedEmbedder(inner, sw) if inner is not None else None
    method.ranker_ = TimedRanker(ranker, sw)
    if timed_emb is not None:
        ranker.embedder = timed_emb
    try:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            yield timed_emb
    finally:
        method.ranker_ = ranker
        if timed_emb is not None:
            ranker.embedder = inner


def ms(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1e3, q)), 3)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"p50": ms(values, 50), "p99": ms(values, 99), "mean": round(statistics.fmean(values) * 1e3, 3)}


def bench_cell(
    label: str,
    method: Any,
    size: int,
    queries: Sequence[Any],
    *,
    warmup: int,
    n_queries: int,
    max_seconds: float,
    min_queries: int,
    read: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    from tailorlm.personalize.render import approx_tokens

    sw = Stopwatch()
    user = user_of(size)
    totals: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in ("store_read", "rank", "query_embed", "render", "other")}
    tokens: list[int] = []
    retrieved: list[int] = []
    with instrumented(method, sw, read=read) as emb:
        for q in queries[:warmup]:
            method.personalize(user, q)
        embedded_before = emb.texts if emb else 0
        started = time.perf_counter()
        for q in queries[warmup : warmup + n_queries]:
            sw.current = {}
            t = time.perf_counter()
            out = method.personalize(user, q)
            total = time.perf_counter() - t
            totals.append(total)
            parts = dict(sw.current)
            parts["other"] = total - parts.get("store_read", 0) - parts.get("rank", 0) - parts.get("render", 0)
            for s in stages:
                stages[s].append(parts.get(s, 0.0))
            tokens.append(sum(approx_tokens(m["content"]) for m in out.messages))
            assert tokens[-1] == out.record.prompt_tokens
            retrieved.append(len(out.record.retrieved))
            if time.perf_counter() - started > max_seconds and len(totals) >= min_queries:
                break
        embedded = (emb.texts - embedded_before) if emb else 0
    row: dict[str, Any] = {
        "method": label,
        "items": size,
        "queries": len(totals),
        "latency_ms": summary(totals) | {"max": round(max(totals) * 1e3, 3)},
        "breakdown_ms": {s: summary(v) for s, v in stages.items() if emb or s != "query_embed"},
        "prompt_tokens_mean": round(statistics.fmean(tokens), 1),
        "retrieved_mean": round(statistics.fmean(retrieved), 2),
        "meets_target": ms(totals, 99) <= TARGET_MS,
    }
    if emb is not None:
        row["texts_embedded_during_timing"] = embedded  # one per query: no entry vector was computed
        assert embedded == len(totals), "entry vectors were embedded while timing; the cache did not hold"
    if isinstance(getattr(method, "ranker_", None), BM25Ranker):
        row["index_builds"] = method.ranker_.builds
    return row


# -- prompt tokens and BM25 stages ---------------------------------------------------------------


def prompt_tokens_all_history(store: Any, size: int, queries: Sequence[Any], n: int) -> dict[str, float]:
    """Tokens when every eligible entry is quoted, as RAG renders entries (300-char snippets) or in full."""
    from tailorlm.personalize import ContextBlock, Contribution
    from tailorlm.personalize.rag.method import entry_item
    from tailorlm.personalize.render import approx_tokens, render
    from tailorlm.tasks import get_task

    out: dict[str, list[int]] = {"snippets_300": [], "full_text": []}
    heading = "Some of this user's own past entries (with their answer after ->):"
    for q in queries[:n]:
        task = get_task(q.task)
        entries = load_history(
            store, user_id=user_of(size), doc_kind=task.history_kind, before=q.timestamp, exclude_ids=q.exclude_doc_ids
        )
        for name, chars in (("snippets_300", 300), ("full_text", 10**9)):
            items = tuple(entry_item(e, task, score=None, snippet_chars=chars) for e in entries)
            contrib = Contribution("all-history", [ContextBlock("history", heading, items, priority=1)], scope="user")
            rendered = render([contrib], q, budget_tokens=10**9)
            assert rendered.record.dropped_items == 0
            out[name].append(sum(approx_tokens(m["content"]) for m in rendered.messages))
    return {k: round(statistics.fmean(v), 1) for k, v in out.items()}


def bm25_stages(store: Any, size: int, queries: Sequence[Any], reps: int) -> dict[str, float]:
    """Median ms of each step of one uncached ``BM25Ranker.rank`` call, and of the cache key."""
    import bm25s

    entries = load_history(store, user_id=user_of(size), doc_kind="review", before=queries[0].timestamp)
    steps = ("tokenize_corpus", "build_index", "tokenize_query", "retrieve_threads1", "retrieve_threads0", "cache_key")
    times: dict[str, list[float]] = {s: [] for s in steps}
    for i in range(reps):
        query = queries[i % len(queries)].text
        t0 = time.perf_counter()
        corpus = bm25s.tokenize([_entry_text(e) for e in entries], stopwords="en", show_progress=False)
        t1 = time.perf_counter()
        index = bm25s.BM25()
        index.index(corpus, show_progress=False)
        t2 = time.perf_counter()
        q = bm25s.tokenize([query], stopwords="en", show_progress=False)
        t3 = time.perf_counter()
        index.retrieve(q, k=min(4, len(entries)), show_progress=False, n_threads=1)  # as BM25Ranker first did
        t4 = time.perf_counter()
        index.retrieve(q, k=min(4, len(entries)), show_progress=False, n_threads=0)  # as BM25Ranker does now
        t5 = time.perf_counter()
        hash(tuple((e.user_id, e.entry_id, e.title, e.text) for e in entries))
        t6 = time.perf_counter()
        for name, v in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            times[name].append(v)
    return {name: round(statistics.median(v) * 1e3, 3) for name, v in times.items()}


# -- reporting -------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Personalization overhead per request (no generation), SQLite, {report['machine']['cpu_count']} CPUs; "
        f"target p99 <= {TARGET_MS:g} ms at {TARGET_ITEMS:,} items",
        "",
        "| method | items | n | p50 ms | p99 ms | store read p50 / p99 | rank p50 / p99 | (query embed p50) "
        "| render p50 | other p50 | p99 <= 10 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in report["results"]:
        b = r["breakdown_ms"]
        qe = f"{b['query_embed']['p50']:.2f}" if "query_embed" in b else ""
        lines.append(
            f"| {r['method']} | {r['items']:,} | {r['queries']} | {r['latency_ms']['p50']:.2f} "
            f"| {r['latency_ms']['p99']:.2f} | {b['store_read']['p50']:.2f} / {b['store_read']['p99']:.2f} "
            f"| {b['rank']['p50']:.2f} / {b['rank']['p99']:.2f} | {qe} | {b['render']['p50']:.2f} "
            f"| {b['other']['p50']:.2f} | {'yes' if r['meets_target'] else 'no'} |"
        )
    lines += [
        "",
        "Prompt tokens per request (approx_tokens of system + user message, mean over queries)",
        "",
        "| items | rag-bm25 k=4 | whole history, 300-char snippets | whole history, full text |",
        "|---:|---:|---:|---:|",
    ]
    for r in report["prompt_tokens"]:
        lines.append(
            f"| {r['items']:,} | {r['rag_bm25_k4']:,.0f} | {r['all_history_snippets_300']:,.0f} "
            f"| {r['all_history_full_text']:,.0f} |"
        )
    lines += [
        "",
        "One uncached BM25Ranker.rank call, median ms per step (and the cache key)",
        "",
        "| items | tokenize corpus | build index | tokenize query | retrieve, n_threads=1 (src) "
        "| retrieve, n_threads=0 | cache key |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["bm25_stages_ms"]:
        lines.append(
            f"| {r['items']:,} | {r['tokenize_corpus']:.2f} | {r['build_index']:.2f} | {r['tokenize_query']:.2f} "
            f"| {r['retrieve_threads1']:.2f} | {r['retrieve_threads0']:.2f} | {r['cache_key']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "overhead.json")
    p.add_argument("--sizes", default="10,100,1000,10000", help="history sizes (documents per user)")
    p.add_argument("--methods", default="rag-bm25,rag-dense", help="specs for parse_method_spec")
    p.add_argument("--no-baseline", action="store_true", help="skip the first-version baseline row")
    p.add_argument("--queries", type=int, default=200, help="timed queries per (method, size)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=90.0, help="stop a cell early after this (>= min queries)")
    p.add_argument("--min-queries", type=int, default=50)
    p.add_argument("--token-queries", type=int, default=5, help="queries for the whole-history token count")
    p.add_argument("--bm25-reps", type=int, default=10)
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads for the embedder")
    p.add_argument(
        "--emb-cache", type=Path, default=Path(tempfile.gettempdir()), help="folder for the pre-computed vectors"
    )
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    specs = [s.strip() for s in args.methods.split(",") if s.strip()]

    path = reviews_path()
    reviews = load_reviews(path)
    if reviews is None:
        print(f"skipping: the review data set is not at {path} (set TAILORLM_SHARED_DATA)")
        return 0

    from tailorlm.data import Store
    from tailorlm.personalize import Query, parse_method_spec

    report: dict[str, Any] = {"machine": machine_info(), "command": " ".join(sys.argv)}
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tailorlm-overhead-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'overhead.db'}", files_dir=Path(tmp) / "files")
        start = time.perf_counter()
        populate(store, reviews, sizes)
        report["store"] = {"backend": "sqlite (temp file, WAL)", "load_s": round(time.perf_counter() - start, 1)}
        emb = None
        if any("dense" in s or "hybrid" in s for s in specs):
            from tailorlm.models import SentenceTransformerEmbedder

            if args.torch_threads:
                import torch

                torch.set_num_threads(args.torch_threads)
            emb = SentenceTransformerEmbedder()
            report["embedder"] = {"name": emb.name, "version": emb.version, "dim": emb.dim}
            report["embedder"] |= precompute_vectors(store, emb, reviews, sizes, args.emb_cache)
            print(f"entry vectors ready: {report['embedder']}", file=sys.stderr)

        need = args.warmup + args.queries
        # Query texts from the end of the file backwards: other reviews than the small users' history.
        texts = [reviews[(len(reviews) - 1 - j) % len(reviews)]["text"] for j in range(need)]
        # (label, spec, ranker replacing the fitted one, store read replacing load_history)
        cells: list[tuple[str, str, Callable[[], Any] | None, Callable[..., Any] | None]] = [
            (spec, spec, None, None) for spec in specs
        ]
        if not args.no_baseline and "rag-bm25" in specs:
            cells.insert(0, ("rag-bm25, first version (baseline)", "rag-bm25", RebuildBM25Ranker, orm_load_history))

        results, tokens, stages = [], [], []
        for size in sizes:
            queries = [Query(t, task="amazon-title", timestamp=T0 + 60 * size) for t in texts]
            for label, spec, ranker, read in cells:
                method = parse_method_spec(spec, collaborators={"embedder": emb}).fit(store)
                if ranker is not None:
                    method.ranker_ = ranker()
                row = bench_cell(
                    label,
                    method,
                    size,
                    queries,
                    warmup=args.warmup,
                    n_queries=args.queries,
                    max_seconds=args.max_seconds,
                    min_queries=args.min_queries,
                    read=read,
                )
                results.append(row)
                print(
                    f"{label:48s} {size:>6} items  p50 {row['latency_ms']['p50']:8.2f} ms  "
                    f"p99 {row['latency_ms']['p99']:8.2f} ms  (n={row['queries']})",
                    file=sys.stderr,
                )
            if "rag-bm25" in specs:
                k4 = next(r for r in results if r["method"] == "rag-bm25" and r["items"] == size)
                whole = prompt_tokens_all_history(store, size, queries, args.token_queries)
                tokens.append(
                    {
                        "items": size,
                        "rag_bm25_k4": k4["prompt_tokens_mean"],
                        "rag_bm25_k4_retrieved_mean": k4["retrieved_mean"],
                        "all_history_snippets_300": whole["snippets_300"],
                        "all_history_full_text": whole["full_text"],
                    }
                )
                stages.append({"items": size} | bm25_stages(store, size, queries, args.bm25_reps))
        # The baseline's record read must return exactly what load_history does today.
        # ... and the cached index must rank exactly as the uncached one.
        for size in sizes:
            kw = {"user_id": user_of(size), "doc_kind": "review", "before": T0 + 60 * size}
            entries = load_history(store, **kw)
            assert orm_load_history(store, **kw) == entries
            cached = BM25Ranker()
            for text in texts[:5]:
                want = RebuildBM25Ranker().rank(entries, query=text, k=4)
                assert cached.rank(entries, query=text, k=4) == want
            assert cached.builds == 1
        store.close()

    report["results"] = results
    report["prompt_tokens"] = tokens
    report["bm25_stages_ms"] = stages
    report["config"] = {
        "sizes": sizes,
        "task": "amazon-title",
        "k": 4,
        "queries": args.queries,
        "warmup": args.warmup,
        "max_seconds_per_cell": args.max_seconds,
        "percentiles": "numpy linear interpolation over the timed queries",
        "dense_vectors": "pre-computed and written to the store before timing; the warm-up loads them into "
        "DenseRanker's in-memory cache, so only the query is embedded per request",
        "query_texts": "other reviews (whole review text), newest in file first",
        # src changes under concurrent work: which ranker/history code the "rag-*" rows ran.
        "src_sha1": {
            name: hashlib.sha1((REPO / "src" / "tailorlm" / "retrieval" / name).read_bytes()).hexdigest()[:12]
            for name in ("bm25.py", "dense.py", "history.py")
        },
    }
    report["machine"]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    report["wall_s"] = round(time.perf_counter() - wall, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
