"""Ray as the training executor: the same 16 user LoRA adapters with 1 worker vs 2 workers.

Why: per-user training is embarrassingly parallel, but on a CPU box the workers share
cores and each loads its own copy of the base model; this measures what a second worker
buys here (the speedup, and where it stops), and turns the measured per-job cost into a
projection for N nodes.

Setup: one local Ray (``num_cpus`` = this machine's cores), the packaged SmolLM2 in fp32,
16 synthetic users of ``amazon-title`` (``--examples`` each), tiny LoRA jobs (r=4, q/v,
64 tokens, ``--steps`` steps of batch 2). Each configuration trains into a fresh SQLite store
through :class:`~tailorlm.personalize.training.queue.TrainQueue` and
:class:`~tailorlm.personalize.training.ray_executor.RayExecutor`; ``wall`` includes starting
the actors (each loads the model), ``jobs`` is from the first job handed out to the last one
recorded. ``--configs`` lists workers x torch threads per worker; the default measures one
worker given the whole machine (1 x cores), one worker on one core (1 x 1, Ray's usual
one-CPU actor) and one one-thread worker per core (cores x 1), so both questions are answered:
what a second worker adds to one that already uses every core, and how Ray's workers scale
when each has its own core (the figure that carries over to more cores and nodes).

Writes benchmarks/results/ray.json and ray.md. ``python benchmarks/bench_ray.py [--users 16 --steps 6]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from tailorlm.data import Document, Store, TaskExample
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.personalize.training.queue import TrainQueue
from tailorlm.personalize.training.ray_executor import RayExecutor, SettingsContext
from tailorlm.settings import default_cache_dir, load_settings

ROOT = Path(__file__).resolve().parents[1]
TASK = "amazon-title"
WORDS = ["bright", "warm", "solid", "cheap", "sturdy", "crisp", "quiet", "heavy"]


def _records(users: int, examples: int) -> list[Any]:
    """Users with a few dated reviews each; the latest is held out by the trainer."""
    recs: list[Any] = []
    for u in range(users):
        word = WORDS[u % len(WORDS)]
        for i in range(examples):
            text = f"User {u} says: these strings sound {word} on my guitar, take {i}, and they stay in tune."
            title = f"{word.title()} strings, take {i}"
            recs.append(Document(user_id=f"u{u:02d}", doc_kind="review", text=text, title=title, timestamp=100 + i))
            recs.append(
                TaskExample(task=TASK, example_id=f"u{u:02d}-{i}", user_id=f"u{u:02d}", input=text, target=title,
                            timestamp=100 + i)
            )  # fmt: skip
    return recs


def _run(workers: int, threads: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One configuration: a fresh store and queue, ``workers`` actors of ``threads`` torch
    threads each, every job trained."""
    name = f"w{workers}t{threads}"
    url = f"sqlite:///{tmp / f'{name}.db'}"
    store = Store(url, files_dir=tmp / f"files-{name}")
    store.add(_records(args.users, args.examples))
    settings = load_settings(cache_dir=default_cache_dir(), generator={"model": "smollm2", "dtype": "float32"})
    make = SettingsContext(settings, store_url=url, files_dir=str(tmp / f"files-{name}"))
    executor = RayExecutor(make, workers=workers, threads_per_worker=threads)
    config = {"r": 4, "dropout": 0.0, "max_length": 64, "batch_size": 2, "steps": args.steps}
    queue = TrainQueue(tmp / f"q-{name}.sqlite")
    queue.add([TrainJob("lora", "user", f"u{u:02d}", TASK, config) for u in range(args.users)])
    ctx = TrainContext(store, None, None)  # type: ignore[arg-type]  # the driver loads no model
    started = time.perf_counter()
    counts = queue.run(ctx, executor=executor)
    wall = time.perf_counter() - started
    done = queue.jobs("done")
    job_seconds = [q.seconds or 0.0 for q in done]
    return {
        "workers": workers,
        "threads_per_worker": executor.threads(),
        "counts": counts,
        "wall_s": round(wall, 2),
        "per_job_s_mean": round(sum(job_seconds) / max(1, len(job_seconds)), 3),
        "job_seconds_sum": round(sum(job_seconds), 2),
        "jobs_per_s": round(len(done) / wall, 3),
    }


def _projection(one: dict[str, Any], two: dict[str, Any], cores: int) -> dict[str, Any]:
    """Jobs/hour on N nodes of this machine's size, from the measured per-job cost (``one``: a
    single one-thread worker's run; ``two``: one one-thread worker per core).

    A node runs ``cores`` one-thread workers; one job costs what it cost with 2 workers on
    2 cores here (contention included). Jobs are independent and the driver's work per job
    is one small queue write and one Ray call (milliseconds), so nodes add linearly until
    the store's writes (one registration per job) or the shared files folder bind.
    """
    per_job = two["per_job_s_mean"]
    per_node = cores / per_job  # jobs/s of one node
    return {
        "per_job_s_one_thread": per_job,
        "scaling_efficiency_per_core": round((one["wall_s"] / two["wall_s"]) / two["workers"], 3),
        "jobs_per_hour": {str(n): round(per_node * n * 3600) for n in (1, 2, 4, 8, 16, 32)},
        "hours_for_100k_users": {str(n): round(100_000 / (per_node * n * 3600), 2) for n in (1, 2, 4, 8, 16, 32)},
    }


def _markdown(result: dict[str, Any]) -> str:
    rows = [
        "| workers | threads/worker | wall (s) | mean job (s) | jobs/s | done |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        rows.append(
            f"| {r['workers']} | {r['threads_per_worker']} | {r['wall_s']} | {r['per_job_s_mean']} | "
            f"{r['jobs_per_s']} | {r['counts']['done']} |"
        )
    proj = result["projection"]
    lines = [
        f"# Ray executor: {result['users']} user adapters, 1 vs 2 workers",
        "",
        f"Machine: {result['machine']}; {result['date']}; `{result['command']}`",
        "",
        *rows,
        "",
        *[f"Speedup {k}: **{v}x** (target >= 1.6x for 2 workers vs 1)." for k, v in result["speedups"].items()],
        "",
        f"Projection (per job {proj['per_job_s_one_thread']} s on one thread, "
        f"per-core efficiency {proj['scaling_efficiency_per_core']}, nodes of {result['cores']} cores):",
        "",
        "| nodes | jobs/hour | hours for 100k users |",
        "|---|---|---|",
        *[f"| {n} | {v} | {proj['hours_for_100k_users'][n]} |" for n, v in proj["jobs_per_hour"].items()],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--examples", type=int, default=6)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--configs", default=None, help="workers x threads, e.g. 1x2,1x1,2x1 (default from the cores)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    configs = [tuple(int(v) for v in c.split("x")) for c in (args.configs or f"1x{cores},1x1,{cores}x1").split(",")]
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            runs = [_run(w, t, args, Path(tmp)) for w, t in configs]
    finally:
        ray.shutdown()
    by = {(r["workers"], r["threads_per_worker"]): r for r in runs}
    whole, one, per_core = by.get((1, cores)), by.get((1, 1)), by.get((cores, 1))
    speedups = {}
    if whole and per_core:
        speedups[f"{cores} one-thread workers vs 1 worker of {cores} threads"] = round(
            whole["wall_s"] / per_core["wall_s"], 2
        )
    if one and per_core:
        speedups[f"{cores} one-thread workers vs 1 one-thread worker"] = round(one["wall_s"] / per_core["wall_s"], 2)
    result = {
        "command": f"benchmarks/bench_ray.py --users {args.users} --examples {args.examples} --steps {args.steps}"
        + (f" --configs {args.configs}" if args.configs else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}",
        "cores": cores,
        "users": args.users,
        "runs": runs,
        "speedups": speedups,
        "projection": _projection(one or runs[0], per_core or runs[-1], cores),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "ray.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
