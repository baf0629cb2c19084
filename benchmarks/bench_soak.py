"""Soak test of the HTTP service: bench_serve_load.py's mixed load for 10 minutes, watching the server's RSS.

Usage:
    python benchmarks/bench_soak.py [--duration 600] [--warmup 30] [--clients 20] [--users 20]
                                    [--no-memory] [--sample-every 10]
                                    [--out benchmarks/results/soak.json]

The server, the seeding, the clients, the operation mix and the lost-write check are
those of ``benchmarks/bench_serve_load.py`` (imported from its path, not copied): a real
uvicorn in a separate process over a fresh SQLite store, tailorlm's FakeGenerator, and
here conversational memory ON by default (``--no-memory`` turns it off).

The load runs without a break for ``--warmup`` + ``--duration`` seconds. The server
process's resident memory (VmRSS from /proc/<pid>/status) is sampled at the start of the
load, at the end of the warm-up, every ``--sample-every`` seconds, at the end of the load
and once more after the memory worker's queue has drained (up to ``--drain`` s, no
load). The RSS growth ratio is end / end-of-warm-up; growth from the start of the load is
reported too. Errors (any response >= 400 or exception, by operation; the mix expects no
4xx) and lost writes (acknowledged but not in the store) cover the whole run, warm-up
included.

Targets (reported, never tuned for): 0 errors, 0 lost writes, RSS growth <= 10 %.
Writes ``--out`` (JSON), the same name with ``.md`` (a table) and ``_rss.png`` (RSS over
time). Exits 1 when a target is not met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RSS_GROWTH_TARGET = 0.10


import bench_serve_load as bsl  # noqa: E402  (a sibling script: its folder is first on sys.path)

# -- server process -------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """bench_serve_load's server, plus a thread that writes the memory worker's counters to ``--stats``."""
    import tailorlm.serve

    create_app = tailorlm.serve.create_app

    def create_app_with_stats(*a: Any, **kw: Any) -> Any:
        app = create_app(*a, **kw)
        threading.Thread(target=_write_stats, args=(app, Path(args.stats)), daemon=True).start()
        return app

    tailorlm.serve.create_app = create_app_with_stats  # bsl.serve imports it from the package at call time
    return bsl.serve(args)


def _write_stats(app: Any, path: Path, every: float = 1.0) -> None:
    tmp = path.with_suffix(".tmp")
    tracer = _MallocTracer(path.with_suffix(".tracemalloc.txt")) if os.environ.get("SOAK_TRACEMALLOC") else None
    last_pystats = 0.0
    while True:
        if tracer is not None:
            tracer.tick()
        if os.environ.get("SOAK_PYMALLOC") and time.monotonic() - last_pystats > 30:
            last_pystats = time.monotonic()
            sys._debugmallocstats()  # to the server's stderr: pymalloc arenas and live bytes
        memory = app.state.service.memory
        stats: dict[str, Any] = {"memory": memory is not None, "sqlite_mb": _sqlite_memory_mb()}
        if memory is not None:
            stats.update(
                queue=memory.queue.qsize(),
                processed=memory.processed,
                failed=memory.failed,
                skipped=memory.skipped,
                last_error=memory.last_error,
            )
        tmp.write_text(json.dumps(stats), encoding="utf-8")
        os.replace(tmp, path)
        time.sleep(every)


class _MallocTracer:
    """``--trace-malloc``: where Python allocations grew since the first snapshot (slows the server)."""

    def __init__(self, out: Path, every_s: float = 30.0) -> None:
        import tracemalloc

        self.tracemalloc = tracemalloc
        tracemalloc.start(12)
        self.out, self.every_s = out, every_s
        self.first = None
        self.next = time.monotonic() + every_s

    def tick(self) -> None:
        if time.monotonic() < self.next:
            return
        self.next = time.monotonic() + self.every_s
        snap = self.tracemalloc.take_snapshot().filter_traces(
            [self.tracemalloc.Filter(False, self.tracemalloc.__file__)]
        )
        if self.first is None:
            self.first = snap
            return
        lines = [f"traced {self.tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB"]
        for stat in snap.compare_to(self.first, "traceback")[:12]:
            lines.append(f"{stat.size_diff / 2**20:+.2f} MB  {stat.count_diff:+d} blocks")
            lines.extend("    " + line for line in stat.traceback.format()[-12:])
        self.out.write_text("\n".join(lines), encoding="utf-8")


def _sqlite_memory_mb() -> float | None:
    """Heap memory SQLite holds in this process (page caches of every connection, statements)."""
    try:
        import ctypes
        import ctypes.util

        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return round(lib.sqlite3_memory_used() / 2**20, 2)
    except OSError:
        return None


def _read_stats(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -- sampling ------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in KiB and the thread count of a process (/proc, or psutil when there is no /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        import psutil  # only where /proc is missing

        p = psutil.Process(pid)
        return {"rss_kb": p.memory_info().rss // 1024, "hwm_kb": 0, "threads": p.num_threads()}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "hwm_kb": int(fields["VmHWM"].split()[0]),
        "threads": int(fields["Threads"]),
    }


class Sampler:
    """RSS and counters of the server process; ``take`` is called from the client event loop."""

    def __init__(self, pid: int, db: Path, stats: Path, rec: Any, t0: float) -> None:
        self.pid, self.db, self.stats, self.rec, self.t0 = pid, db, stats, rec, t0
        self.samples: list[dict[str, Any]] = []
        self._seen = {op: 0 for op in bsl.MIX}

    def take(self, label: str = "") -> dict[str, Any]:
        t = time.monotonic() - self.t0
        status = proc_status(self.pid)
        window = []
        for op in bsl.MIX:
            lat = self.rec.latency.get(op, [])
            window += lat[self._seen[op] :]
            self._seen[op] = len(lat)
        dt = t - self.samples[-1]["t_s"] if self.samples else 0.0
        stats = _read_stats(self.stats)
        sample = {
            "t_s": round(t, 2),
            "label": label,
            "rss_mb": round(status["rss_kb"] / 1024, 2),
            "hwm_mb": round(status["hwm_kb"] / 1024, 2),
            "threads": status["threads"],
            "cpu_s": round(bsl._cpu_seconds(self.pid), 2),
            "requests": sum(len(v) for v in self.rec.latency.values()),
            "errors": sum(len(v) for v in self.rec.errors.values()),
            "window_requests_per_s": round(len(window) / dt, 1) if dt > 0 else None,
            "window_p50_ms": round(1000 * bsl._percentile(window, 50), 1) if window else None,
            "window_p99_ms": round(1000 * bsl._percentile(window, 99), 1) if window else None,
            "db_mb": round(sum(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*")) / 2**20, 2),
            "memory_queue": stats.get("queue"),
            "sqlite_heap_mb": stats.get("sqlite_mb"),
            "memory_processed": stats.get("processed"),
            "memory_failed": stats.get("failed"),
        }
        self.samples.append(sample)
        print(
            f"  t={t:6.0f} s  RSS {sample['rss_mb']:7.1f} MB  threads {sample['threads']:3d}  "
            f"requests {sample['requests']:7,d}  errors {sample['errors']}  "
            f"window {sample['window_requests_per_s'] or 0:6.1f}/s  memory queue {sample['memory_queue']}  "
            f"sqlite heap {sample['sqlite_heap_mb']} MB  "
            f"{label}",
            flush=True,
        )
        return sample


async def soak(
    url: str, keys: dict[str, str], clients: int, warmup: float, duration: float, every: float, sampler: Sampler
) -> float:
    """Key warm-up, then ``clients`` bsl.client_loop for warmup + duration s while sampling."""
    import httpx

    users = list(keys)
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:  # each key's first use runs scrypt
        for user in users:
            (await c.get(f"/v1/users/{user}", headers={"Authorization": f"Bearer {keys[user]}"})).raise_for_status()
    total = warmup + duration
    sampler.t0 = time.monotonic()
    deadline = sampler.t0 + total
    sampler.take("load start")
    tasks = [
        asyncio.create_task(
            bsl.client_loop(url, keys[users[i % len(users)]], users[i % len(users)], i, deadline, sampler.rec)
        )
        for i in range(clients)
    ]
    marks = sorted({warmup, *(k * every for k in range(1, int(total // every) + 1))} - {0.0, total})
    for mark in marks:  # scheduled against t0, so the samples do not drift
        await asyncio.sleep(max(0.0, sampler.t0 + mark - time.monotonic()))
        sampler.take("end of warm-up" if mark == warmup else "")
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - sampler.t0
    sampler.take("end of load")
    return elapsed


def _error_class(message: str) -> str:
    return message.split(":", 1)[0]


# -- report --------------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [s for s in result["rss_samples"] if s["label"] != "after drain"]
    t = [s["t_s"] / 60 for s in samples]
    rss = result["rss"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
    ax.plot(t, [s["rss_mb"] for s in samples], marker=".", label="server RSS")
    ax.axhline(rss["start_mb"], color="grey", ls="--", lw=1, label=f"after warm-up ({rss['start_mb']:.0f} MB)")
    ax.axhline(rss["start_mb"] * (1 + RSS_GROWTH_TARGET), color="red", ls=":", lw=1, label="+10 % (target ceiling)")
    ax.axvline(result["warmup_s"] / 60, color="grey", lw=0.8)
    ax.set_ylabel("RSS (MB)")
    ax.set_title(
        f"tailorlm soak: {result['clients']} clients, {result['generator']}, memory "
        f"{'on' if result['memory'] else 'off'}; growth {100 * rss['growth']:+.1f} %"
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax2.plot(t[1:], [s["window_requests_per_s"] for s in samples[1:]], color="tab:green", label="requests/s")
    ax2.set_ylabel("requests/s")
    ax2.set_xlabel("minutes since the load started")
    ax2.grid(alpha=0.3)
    if result["memory"]:
        ax3 = ax2.twinx()
        ax3.plot(t, [s["memory_queue"] or 0 for s in samples], color="tab:orange", label="memory queue")
        ax3.set_ylabel("memory queue")
        lines = ax2.get_lines() + ax3.get_lines()
        ax2.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    rss, t = result["rss"], result["targets"]

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        f"# Soak: {result['duration_s']:g} s of mixed load (+ {result['warmup_s']:g} s warm-up)",
        "",
        f"`{result['command']}` — {result['date']}, {result['machine']['cpus']} CPUs, "
        f"Python {result['machine']['python']}, SQLite {result['machine']['sqlite']}; "
        f"{result['generator']}, memory {'on' if result['memory'] else 'off'}, {result['clients']} clients, "
        f"{result['users']} users ({result['data']}); {result['requests']:,} requests "
        f"({result['requests_per_s']}/s).",
        "",
        "| target | figure | |",
        "|---|---|---|",
        f"| 0 errors | {result['errors']} | {met(t['errors']['met'])} |",
        f"| 0 lost writes | {result['lost_writes']} of {result['acknowledged_writes']:,} acknowledged "
        f"| {met(t['lost_writes']['met'])} |",
        f"| RSS growth <= 10 % | {rss['start_mb']:.1f} → {rss['end_mb']:.1f} MB ({100 * rss['growth']:+.1f} %) "
        f"| {met(t['rss_growth']['met'])} |",
        "",
        f"RSS at the start of the load {rss['load_start_mb']:.1f} MB (growth from there "
        f"{100 * rss['growth_from_load_start']:+.1f} %), peak {rss['peak_mb']:.1f} MB, "
        f"after the memory queue drained {rss['after_drain_mb']:.1f} MB; samples every "
        f"{result['sample_every_s']:g} s in the JSON, plot in `{Path(result['plot']).name}`.",
        "",
        "| operation | requests | errors | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op, o in result["operations"].items():
        lines.append(
            f"| {op} | {o['count']:,} | {o['errors']} | {o['p50_ms']:.1f} | {o['p99_ms']:.1f} | {o['max_ms']:.1f} |"
        )
    if result["error_classes"]:
        lines += ["", "Errors by class: " + ", ".join(f"{k} × {v}" for k, v in result["error_classes"].items())]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load after the warm-up")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds of load before the RSS baseline")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--users", type=int, default=20, help="seeded users (clients share them round-robin)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True, help="conversational memory")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--drain", type=float, default=60.0, help="max seconds to wait for the memory queue after")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    p.add_argument("--trace-malloc", action="store_true", help="diagnose growth: tracemalloc diffs beside --out (slow)")
    p.add_argument(
        "--no-writes", action="store_true", help="drop the mix's writes: the store grows only by memory facts"
    )
    p.add_argument("--pymalloc-stats", action="store_true", help="the server prints sys._debugmallocstats() every 30 s")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--admin-key", help=argparse.SUPPRESS)
    p.add_argument("--stats", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        args.real_model = False
        return serve(args)

    import httpx

    from tailorlm.serve import new_api_key

    if args.no_writes:  # separates growth that follows the store's growth from growth that does not
        bsl.MIX.update(add_document=0, add_interaction=0, add_preference=0)
    command = "python benchmarks/bench_soak.py" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    tmp = Path(tempfile.mkdtemp(prefix="tailorlm-soak-"))
    db, stats_path = tmp / "store.db", tmp / "server-stats.json"
    admin_key = new_api_key()
    cmd = [sys.executable, __file__, "--serve", "--db", str(db), "--admin-key", admin_key, "--stats", str(stats_path)]
    cmd += ["--memory" if args.memory else "--no-memory"]
    env = {**os.environ, **({"SOAK_TRACEMALLOC": "1"} if args.trace_malloc else {})}
    env.update({"SOAK_PYMALLOC": "1"} if args.pymalloc_stats else {})
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    rec = bsl.Recorder()
    sampler = Sampler(server.pid, db, stats_path, rec, time.monotonic())
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the server did not start (exit code {server.poll()})")
        rows = bsl.seed_rows(args.users)
        keys: dict[str, str] = {}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120) as c:
            for user, docs in rows.items():
                c.post("/v1/users", json={"user_id": user}).raise_for_status()
                body = "\n".join(json.dumps(d) for d in docs).encode()
                c.post(f"/v1/users/{user}/upload", content=body).raise_for_status()
                keys[user] = c.post("/v1/keys", json={"user_id": user}).json()["key"]
        print(f"server {url} (pid {server.pid}): {len(rows)} users, {sum(map(len, rows.values()))} documents; "
              f"{args.clients} clients, memory {'on' if args.memory else 'off'}, "
              f"{args.warmup:g} s warm-up + {args.duration:g} s ...", flush=True)  # fmt: skip
        machine = bsl._machine()
        elapsed = asyncio.run(soak(url, keys, args.clients, args.warmup, args.duration, args.sample_every, sampler))
        drain_deadline = time.monotonic() + args.drain
        while _read_stats(stats_path).get("queue") and time.monotonic() < drain_deadline:
            time.sleep(1)
        time.sleep(1.5)  # one more stats write after the queue emptied
        sampler.take("after drain")
        final_stats = _read_stats(stats_path)
    finally:
        server.stdin.close()
        server.wait(60)
    writes = bsl.count_rows(db, rec.acked)

    ops = {}
    for op in bsl.MIX:
        lat = rec.latency.get(op, [])
        if lat:
            ops[op] = {
                "count": len(lat),
                "errors": len(rec.errors.get(op, [])),
                "p50_ms": round(1000 * bsl._percentile(lat, 50), 2),
                "p90_ms": round(1000 * bsl._percentile(lat, 90), 2),
                "p99_ms": round(1000 * bsl._percentile(lat, 99), 2),
                "max_ms": round(1000 * max(lat), 2),
            }
    total = sum(o["count"] for o in ops.values())
    errors = sum(o["errors"] for o in ops.values())
    lost = sum(w["lost"] for w in writes.values())
    acked = sum(w["acknowledged"] for w in writes.values())
    samples = sampler.samples
    by_label = {s["label"]: s for s in samples if s["label"]}
    start = by_label.get("end of warm-up", by_label["load start"])
    end = by_label["end of load"]
    growth = end["rss_mb"] / start["rss_mb"] - 1
    load_samples = [s for s in samples if s["label"] != "after drain"]
    after_start = [s for s in load_samples if s["t_s"] >= start["t_s"]]
    slope = _slope([s["t_s"] / 60 for s in after_start], [s["rss_mb"] for s in after_start])
    rss = {
        "load_start_mb": by_label["load start"]["rss_mb"],
        "start_mb": start["rss_mb"],
        "start_t_s": start["t_s"],
        "end_mb": end["rss_mb"],
        "end_t_s": end["t_s"],
        "growth": round(growth, 4),
        "growth_from_load_start": round(end["rss_mb"] / by_label["load start"]["rss_mb"] - 1, 4),
        "peak_mb": max(s["rss_mb"] for s in load_samples),
        "hwm_mb": end["hwm_mb"],
        "slope_mb_per_min_after_warmup": round(slope, 3),
        "after_drain_mb": by_label["after drain"]["rss_mb"],
    }
    error_classes = Counter(f"{op}: {_error_class(e)}" for op, errs in rec.errors.items() for e in errs)
    png = args.out.with_name(args.out.stem + "_rss.png")
    result = {
        "benchmark": "soak",
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine,
        "generator": "FakeGenerator",
        "memory": args.memory,
        "data": "amazon reviewers" if bsl.AMAZON.exists() else "synthetic",
        "users": len(keys),
        "clients": args.clients,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "seconds": round(elapsed, 2),
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "errors": errors,
        "errors_by_operation": {op: o["errors"] for op, o in ops.items()},
        "error_classes": dict(error_classes.most_common()),
        "error_samples": {op: errs[:3] for op, errs in rec.errors.items()},
        "writes": writes,
        "acknowledged_writes": acked,
        "lost_writes": lost,
        "rss": rss,
        "memory_worker": final_stats,
        "targets": {
            "errors": {"target": 0, "value": errors, "met": errors == 0},
            "lost_writes": {"target": 0, "value": lost, "met": lost == 0},
            "rss_growth": {"target": RSS_GROWTH_TARGET, "value": rss["growth"], "met": growth <= RSS_GROWTH_TARGET},
        },
        "operations": ops,
        "sample_every_s": args.sample_every,
        "rss_samples": samples,
        "plot": str(png),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = markdown(result)
    args.out.with_suffix(".md").write_text(md, encoding="utf-8")
    plot(result, png)

    print()
    print(md)
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {png}")
    trace = stats_path.with_suffix(".tracemalloc.txt")
    if args.trace_malloc and trace.exists():
        args.out.with_suffix(".tracemalloc.txt").write_text(trace.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"wrote {args.out.with_suffix('.tracemalloc.txt')}")
    return 0 if all(t["met"] for t in result["targets"].values()) else 1


def _slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y over x (0 with fewer than two points)."""
    if len(x) < 2:
        return 0.0
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if sxx else 0.0


if __name__ == "__main__":
    sys.exit(main())
