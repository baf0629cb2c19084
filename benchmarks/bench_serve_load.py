"""Load on the HTTP service: concurrent clients with mixed reads, writes and chats, then a row count.

Usage:
    python benchmarks/bench_serve_load.py [--clients 20] [--duration 60] [--real-model] [--memory]
                                          [--out benchmarks/results/serve_load.json]

The server is a real uvicorn on 127.0.0.1 in a separate process (this script, re-run
with ``--serve``), over a fresh SQLite store seeded with ``--users`` users: real Amazon
reviewers when ../shared/data is there, synthetic ones otherwise. Its generator is
tailorlm's FakeGenerator (the service's own overhead) or, with ``--real-model``, the
packaged SmolLM2 (chats then queue for the one model lock). Memory is off unless
``--memory``; the rate limit is raised far above what the clients can send, so it is
exercised but never refuses.

Each client is a bounded loop (until ``--duration`` seconds have passed) with its own
user-scoped key, drawing operations from a fixed mix. Every write carries a unique id;
after the run the server stops and the store is opened directly: every acknowledged
write must be there (lost writes = acknowledged - found). Prints p50/p99 per operation
and writes the figures, with the machine, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
AMAZON = (
    Path(os.environ.get("TAILORLM_SHARED_DATA") or REPO.parent / "shared" / "data")
    / "amazon-musical-instruments"
    / "reviews_Musical_Instruments_5.json.gz"
)
# Operation mix (weights): the reads a workbench/app does, the writes an app makes, chats.
MIX = {
    "get_overview": 12,
    "list_documents": 12,
    "list_users": 4,
    "list_models": 4,
    "get_facts": 4,
    "add_document": 18,
    "add_interaction": 10,
    "add_preference": 6,
    "chat": 18,
    "chat_stream": 6,
    "compare": 6,
}
QUESTIONS = [
    "Which strings would suit my playing?",
    "Suggest a pop filter for my home studio.",
    "Is this tuner worth it for a beginner?",
    "What cable should I buy for my pedalboard?",
]


# -- server process -------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """Run the app until stdin closes; print the URL once it is serving."""
    from tailorlm.data import Store
    from tailorlm.serve import create_app, run_in_thread
    from tailorlm.settings import load_settings

    settings = load_settings(
        store_url=f"sqlite:///{args.db}",
        cache_dir=str(Path(args.db).parent / "cache"),
        serve={"memory": args.memory, "rate_limit_per_minute": 1_000_000},
    )
    store = Store(settings.resolved_store_url)
    if args.real_model:
        from tailorlm.models import build_generator

        generator = build_generator(load_settings())  # the packaged model, in the user cache
    else:
        from tailorlm.testing import FakeGenerator

        generator = FakeGenerator()
        generator.calls = _NoRecord()  # do not keep every call for 60 s
    app = create_app(settings, store=store, generator=generator, admin_key=args.admin_key)
    with run_in_thread(app) as url:
        print(url, flush=True)
        sys.stdin.read()  # the parent closes stdin to stop us
    store.close()
    return 0


class _NoRecord(list):
    def append(self, item: Any) -> None:
        return None


# -- seeding -------------------------------------------------------------------------------------


def seed_rows(n_users: int) -> dict[str, list[dict]]:
    """JSONL document rows per user: real Amazon reviewers when available, else synthetic."""
    if AMAZON.exists():
        by_user: dict[str, list[dict]] = defaultdict(list)
        with gzip.open(AMAZON, "rt", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                by_user[r["reviewerID"]].append(
                    {"kind": "document", "doc_kind": "review", "text": r["reviewText"] or r["summary"],
                     "title": r["summary"], "rating": r["overall"], "item_id": r["asin"],
                     "timestamp": r["unixReviewTime"]}
                )  # fmt: skip
        chosen = sorted(u for u, docs in by_user.items() if len(docs) >= 8)[:n_users]
        return {f"amazon:{u}": by_user[u] for u in chosen}
    rng = random.Random(0)
    words = ["warm", "bright", "strings", "tuner", "pedal", "cable", "studio", "vocals", "mellow", "crisp"]
    return {
        f"synthetic:{i:02d}": [
            {"kind": "document", "doc_kind": "review", "text": " ".join(rng.choices(words, k=40)), "rating": 4,
             "timestamp": 1_400_000_000 + j}
            for j in range(10)
        ]
        for i in range(n_users)
    }  # fmt: skip


# -- clients -------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.acked: dict[str, set[str]] = defaultdict(set)  # table -> "user|id" of acknowledged writes


async def client_loop(url: str, key: str, user: str, idx: int, deadline: float, rec: Recorder) -> None:
    import httpx

    rng = random.Random(idx)
    ops, weights = list(MIX), list(MIX.values())
    n = 0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as c:
        while time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            n += 1
            uid = f"c{idx}-{n}"
            start = time.perf_counter()
            try:
                ok = await run_op(c, op, user, uid, rng, rec)
            except Exception as exc:  # a transport error is an error too
                ok = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - start
            rec.latency[op].append(elapsed)
            if ok is not True:
                rec.errors[op].append(str(ok)[:300])


async def run_op(c: Any, op: str, user: str, uid: str, rng: random.Random, rec: Recorder) -> bool | str:
    u = f"/v1/users/{user}"
    question = rng.choice(QUESTIONS)
    if op == "get_overview":
        r = await c.get(f"{u}/overview")
    elif op == "list_documents":
        r = await c.get(f"{u}/documents")
    elif op == "list_users":
        r = await c.get("/v1/users")
    elif op == "list_models":
        r = await c.get("/v1/models")
    elif op == "get_facts":
        r = await c.get(f"{u}/facts")
    elif op == "add_document":
        r = await c.post(f"{u}/documents", json={"doc_id": uid, "doc_kind": "note", "text": f"bench note {uid}"})
        if r.status_code == 201:
            rec.acked["documents"].add(f"{user}|{uid}")
    elif op == "add_interaction":
        body = {"interaction_id": uid, "item_id": f"item-{rng.randrange(50)}", "interaction": "click"}
        r = await c.post(f"{u}/interactions", json=body)
        if r.status_code == 201:
            rec.acked["interactions"].add(f"{user}|{uid}")
    elif op == "add_preference":
        body = {"pref_id": uid, "prompt": question, "chosen": f"short {uid}", "rejected": f"long {uid}"}
        r = await c.post(f"{u}/preferences", json={**body, "source": "bench"})
        if r.status_code == 201:
            rec.acked["preferences"].add(f"{user}|{uid}")
    elif op == "chat":
        body = {"model": "tailorlm/rag-bm25", "messages": [{"role": "user", "content": question}], "max_tokens": 32}
        r = await c.post("/v1/chat/completions", json=body)
        if r.status_code == 200 and not r.json()["choices"][0]["message"]["content"]:
            return "empty answer"
    elif op == "chat_stream":
        body = {"model": "tailorlm/rag-bm25", "stream": True, "max_tokens": 32,
                "messages": [{"role": "user", "content": question}]}  # fmt: skip
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            lines = [line async for line in r.aiter_lines() if line]
        if r.status_code == 200 and lines[-1] != "data: [DONE]":
            return "stream did not end with [DONE]"
    elif op == "compare":
        r = await c.post(f"{u}/compare", json={"message": question, "method": "rag-bm25", "max_tokens": 32})
    else:  # pragma: no cover
        raise ValueError(op)
    return True if r.status_code < 400 else f"HTTP {r.status_code}: {r.text[:200]}"


# -- main ------------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": os.getloadavg(),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), robust to other load on the machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_rows(db: Path, acked: dict[str, set[str]]) -> dict[str, dict[str, int]]:
    """Acknowledged writes found in the store, per table (read after the server stopped)."""
    key_col = {"documents": "doc_id", "interactions": "interaction_id", "preferences": "pref_id"}
    out = {}
    with sqlite3.connect(db) as conn:
        for table, col in key_col.items():
            stored = {f"{u}|{i}" for u, i in conn.execute(f"SELECT user_id, {col} FROM {table}")}
            found = len(acked[table] & stored)
            out[table] = {"acknowledged": len(acked[table]), "found": found, "lost": len(acked[table]) - found}
    return out


async def drive(url: str, keys: dict[str, str], clients: int, duration: float, rec: Recorder) -> float:
    import httpx

    users = list(keys)
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:  # warm-up: each key's first use runs scrypt
        for user in users:
            (await c.get(f"/v1/users/{user}", headers={"Authorization": f"Bearer {keys[user]}"})).raise_for_status()
    deadline = time.monotonic() + duration
    start = time.perf_counter()
    await asyncio.gather(
        *(
            client_loop(url, keys[users[i % len(users)]], users[i % len(users)], i, deadline, rec)
            for i in range(clients)
        )
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--users", type=int, default=20, help="seeded users (clients share them round-robin)")
    p.add_argument("--real-model", action="store_true", help="the packaged SmolLM2 instead of FakeGenerator")
    p.add_argument("--memory", action="store_true", help="turn conversational memory on")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve_load.json")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--admin-key", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args)

    import httpx

    from tailorlm.serve import new_api_key

    tmp = Path(tempfile.mkdtemp(prefix="tailorlm-serve-load-"))
    db = tmp / "store.db"
    admin_key = new_api_key()
    cmd = [sys.executable, __file__, "--serve", "--db", str(db), "--admin-key", admin_key]
    cmd += ["--real-model"] * args.real_model + ["--memory"] * args.memory
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the server did not start (exit code {server.poll()})")
        rows = seed_rows(args.users)
        keys: dict[str, str] = {}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120) as c:
            for user, docs in rows.items():
                c.post("/v1/users", json={"user_id": user}).raise_for_status()
                body = "\n".join(json.dumps(d) for d in docs).encode()
                c.post(f"/v1/users/{user}/upload", content=body).raise_for_status()
                keys[user] = c.post("/v1/keys", json={"user_id": user}).json()["key"]
        print(f"server {url}: {len(rows)} users, {sum(map(len, rows.values()))} documents; "
              f"{args.clients} clients for {args.duration:.0f} s ...", flush=True)  # fmt: skip
        rec = Recorder()
        machine = _machine()
        cpu_before = _cpu_seconds(server.pid)
        elapsed = asyncio.run(drive(url, keys, args.clients, args.duration, rec))
        server_cpu = _cpu_seconds(server.pid) - cpu_before
    finally:
        server.stdin.close()
        server.wait(60)
    writes = count_rows(db, rec.acked)

    ops = {}
    for op in MIX:
        lat = rec.latency.get(op, [])
        if not lat:
            continue
        ops[op] = {
            "count": len(lat),
            "errors": len(rec.errors.get(op, [])),
            "p50_ms": round(1000 * _percentile(lat, 50), 2),
            "p90_ms": round(1000 * _percentile(lat, 90), 2),
            "p99_ms": round(1000 * _percentile(lat, 99), 2),
            "max_ms": round(1000 * max(lat), 2),
        }
    total = sum(o["count"] for o in ops.values())
    errors = sum(o["errors"] for o in ops.values())
    result = {
        "benchmark": "serve_load",
        "command": "python benchmarks/bench_serve_load.py"
        + " --real-model" * args.real_model
        + " --memory" * args.memory
        + f" --clients {args.clients} --duration {args.duration:g}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine,
        "generator": "smollm2 (local, one lock)" if args.real_model else "FakeGenerator",
        "memory": args.memory,
        "data": "amazon reviewers" if AMAZON.exists() else "synthetic",
        "users": len(keys),
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(total, 1), 2),
        "errors": errors,
        "error_samples": {op: errs[:3] for op, errs in rec.errors.items()},
        "writes": writes,
        "lost_writes": sum(w["lost"] for w in writes.values()),
        "operations": ops,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    acked = sum(w["acknowledged"] for w in writes.values())
    print(f"\n{total:,} requests in {elapsed:.1f} s ({total / elapsed:,.1f}/s), {errors} errors, "
          f"{result['lost_writes']} lost writes of {acked:,} acknowledged; "
          f"server CPU {server_cpu:.1f} s ({result['server_cpu_ms_per_request']} ms per request)\n")  # fmt: skip
    print("| operation | requests | errors | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for op, o in ops.items():
        print(f"| {op} | {o['count']:,} | {o['errors']} | {o['p50_ms']:.1f} | {o['p90_ms']:.1f} | "
              f"{o['p99_ms']:.1f} | {o['max_ms']:.1f} |")  # fmt: skip
    print(f"\nwrote {args.out}")
    return 0 if errors == 0 and result["lost_writes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
