"""Decode steps of the continuous batch: KV columns appended in place vs by ``torch.cat``.

Why: transformers' ``DynamicLayer`` concatenates each step's key/value column onto the cache,
copying every layer's cache every step; the decode batch's :class:`SpareColumnsLayer`
(:mod:`tailorlm.models.kv_growth`) writes it into spare columns instead. This builds two
decode batches of the same rows on the real model (``--rows`` prompts as the service bench's,
each with its own random r=8 LoRA adapter on q/v, the last with none), turns one back into
plain ``DynamicLayer`` s, and steps the two in turn, so the VM's drift hits both alike. With
``--mmap-threshold N`` (bytes) glibc's mmap threshold is fixed first, as the service fixes it
(``serve.malloc_mmap_threshold``, 1 MiB): a cache tensor above it is then a fresh mapping at
each concatenation, page faults included.

``python benchmarks/bench_kv_append.py`` writes benchmarks/results/kv_append.json and a
markdown table beside it (median step time per dtype, and the cache's width at the end).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _report import stamped, write  # noqa: E402
from bench_prefill import _generator  # noqa: E402
from bench_serve_batching import ASKS, _reviews  # noqa: E402


def _measure(dtype: str, rows: int, steps: int) -> dict[str, Any]:
    from transformers.cache_utils import DynamicLayer

    from tailorlm.models.base import GenerationConfig
    from tailorlm.models.continuous import ContinuousBatch
    from tailorlm.models.inputs import ModelInput

    with tempfile.TemporaryDirectory(prefix="bench-kv-") as d:
        gen, names = _generator(dtype, rows - 1, Path(d))
        adapters = [*names, None]
        inputs = [
            ModelInput([{"role": "user", "content": f"{ASKS['reply']}\n\n{r}"}], a)
            for r, a in zip(_reviews(rows), adapters, strict=True)
        ]
        config = GenerationConfig(max_new_tokens=steps + 10)
        batches = {}
        for kind in ("in_place", "cat"):
            batch = ContinuousBatch(gen)
            batch.add_many([(i, row, config) for i, row in enumerate(inputs)])
            if kind == "cat":
                for layer in batch.cache.layers:
                    layer.__class__ = DynamicLayer
            batches[kind] = batch
        times: dict[str, list[float]] = {kind: [] for kind in batches}
        for step in range(steps):
            for kind, batch in batches.items():
                start = time.perf_counter()
                batch.step()
                if step >= 5:  # the first steps warm up
                    times[kind].append(time.perf_counter() - start)
        width = batches["in_place"].mask.shape[1]
    cell = {"dtype": dtype, "rows": rows, "steps_timed": steps - 5, "cache_width_at_end": width}
    cell.update({f"{kind}_ms": round(statistics.median(v) * 1000, 1) for kind, v in times.items()})
    cell["in_place_vs_cat"] = round(cell["in_place_ms"] / cell["cat_ms"], 3)
    print(json.dumps(cell), flush=True)
    return cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32,bfloat16", help="comma-separated")
    ap.add_argument("--rows", type=int, default=9, help="rows in the batch (the last without an adapter)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--mmap-threshold", type=int, default=0, help="fix glibc's mmap threshold (bytes; 0: leave it)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kv_append.json")
    args = ap.parse_args()
    if args.mmap_threshold:
        from tailorlm.serve.allocator import fix_mmap_threshold

        if not fix_mmap_threshold(args.mmap_threshold):
            raise SystemExit("could not set the mmap threshold (not glibc?)")
    cells = [_measure(dtype, args.rows, args.steps) for dtype in args.dtype.split(",")]
    report = stamped(mmap_threshold=args.mmap_threshold or None, runs=cells)
    lines = [
        f"Decode step, {args.rows} rows, KV appended in place vs torch.cat, median; mmap threshold "
        f"{args.mmap_threshold or 'as glibc sets it'} ({report['when']})",
        "",
        "| dtype | in place ms | torch.cat ms | in place / cat | cache width at the end |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c['dtype']} | {c['in_place_ms']} | {c['cat_ms']} | {c['in_place_vs_cat']:.2f} | "
        f"{c['cache_width_at_end']} |"
        for c in cells
    ]
    write(args.out, report, lines)


if __name__ == "__main__":
    main()
