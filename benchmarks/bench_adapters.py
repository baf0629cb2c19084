"""Per-user LoRA adapters on the local model: training cost, size, switching and mixed batches.

Measures, on real Amazon reviews (``../shared/data``): per-user training time and data size,
adapter size on disk, switch latency (load an adapter; select it), and generation throughput
of one mixed-adapter batch of N users versus one adapter at a time (same prompts, same tokens).
Writes benchmarks/results/adapters.json and a Markdown table beside it.

Inference is timed in each ``--dtypes`` (default fp32 and bf16): on CPUs with AVX512-BF16,
bf16 matrix products pay off at batch 8 but not at batch 1, so each side of the comparison
is also reported at its own best setting.

Quick smoke run: ``python benchmarks/bench_adapters.py --users 2 --steps 1 --new-tokens 4 --repeats 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tailorlm.adapters import AdapterRegistry
from tailorlm.data import Store
from tailorlm.data.loaders import load_dataset
from tailorlm.models import TransformersGenerator
from tailorlm.models.base import GenerationConfig, model_fingerprint
from tailorlm.personalize.registry import get_trainer
from tailorlm.personalize.training.data import sft_examples, user_examples
from tailorlm.personalize.training.jobs import TrainContext, TrainJob
from tailorlm.settings import default_cache_dir

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--task", default="amazon-title")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each inference mode (median)")
    ap.add_argument(
        "--dtypes", default="float32,bfloat16", help="model dtypes to time inference in (training uses float32)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "adapters.json")
    args = ap.parse_args()
    if not AMAZON.is_file():
        raise SystemExit(f"needs the Amazon reviews at {AMAZON}")

    tmp = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    store = Store(f"sqlite:///{tmp / 's.db'}")
    load_dataset(store, "amazon", AMAZON)
    counts = Counter(e.user_id for e in store.get_examples(task=args.task))
    users = [u for u, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][: args.users]
    gen = TransformersGenerator("smollm2", cache_dir=default_cache_dir())
    reg = AdapterRegistry(store, base_model=model_fingerprint(gen))
    ctx = TrainContext(store, reg, gen)
    config = {"steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length, "r": args.r}

    train, records = get_trainer("lora"), []
    for u in users:
        records.append(train(TrainJob("lora", "user", u, args.task, config), ctx))
    per_user = [
        {
            "user": r.key.owner,
            "seconds": r.meta["seconds"],
            "examples": r.meta["examples"],
            "tokens": r.meta["tokens"],
            "size_bytes": r.meta["size_bytes"],
            "loss_first": r.meta["loss_curve"][0],
            "loss_last": r.meta["loss_curve"][-1],
        }
        for r in records
    ]

    load_ms, set_ms = [], []
    for r in records:
        t = time.perf_counter()
        gen.add_adapter(r.name, r.path)
        load_ms.append((time.perf_counter() - t) * 1e3)
    for r in records:
        t = time.perf_counter()
        gen.model.set_adapter(r.name)
        set_ms.append((time.perf_counter() - t) * 1e3)

    prompts = [sft_examples(user_examples(store, args.task, u, exclude_latest=False))[-1].chat() for u in users]
    names = [r.name for r in records]
    by_dtype: dict[str, dict] = {}
    for dtype in args.dtypes.split(","):
        g = gen
        if dtype != gen.dtype:  # the same adapters in a second copy of the model in this dtype
            g = TransformersGenerator("smollm2", cache_dir=default_cache_dir(), dtype=dtype)
            for r in records:
                g.add_adapter(r.name, r.path)
        by_dtype[dtype] = inference(g, prompts, names, args.new_tokens, args.repeats)
    for n in names:
        gen.delete_adapter(n)
    base = by_dtype[gen.dtype]
    mixed_s, single_s = base["mixed_batch_seconds"], base["one_at_a_time_seconds"]
    fixed = base["fixed_length"]
    # Each side at its best setting: the fastest one-at-a-time dtype vs the fastest mixed batch.
    best_single = min(by_dtype, key=lambda d: by_dtype[d]["fixed_length"]["single"]["seconds"])
    best_mixed = min(by_dtype, key=lambda d: by_dtype[d]["fixed_length"]["mixed"]["seconds"])
    best = {
        "one_at_a_time_dtype": best_single,
        "mixed_dtype": best_mixed,
        "speedup": by_dtype[best_single]["fixed_length"]["single"]["seconds"]
        / by_dtype[best_mixed]["fixed_length"]["mixed"]["seconds"],
    }
    if len(by_dtype) > 1:  # does the batch dtype change what users get?
        ref, other = by_dtype[gen.dtype]["outputs"], by_dtype[best_mixed]["outputs"]
        best["outputs_equal_to_" + gen.dtype] = sum(a == b for a, b in zip(ref, other, strict=True)) / len(ref)

    result = {
        "task": args.task,
        "users": len(users),
        "config": config,
        "per_user": per_user,
        "train_seconds_mean": statistics.mean(p["seconds"] for p in per_user),
        "adapter_bytes_mean": statistics.mean(p["size_bytes"] for p in per_user),
        "load_ms_median": statistics.median(load_ms),
        "set_adapter_ms_median": statistics.median(set_ms),
        "mixed_batch_seconds": mixed_s,
        "one_at_a_time_seconds": single_s,
        "mixed_speedup": base["mixed_speedup"],
        "repeats": args.repeats,
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "new_tokens": args.new_tokens,
        "mixed_equals_single": base["mixed_equals_single"],
        "fixed_length": fixed,
        "by_dtype": by_dtype,
        "best": best,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    md = [
        "| users | steps | train s/user | examples/user | adapter MB | load ms | set ms | mixed batch s |"
        " one-by-one s | speedup | mixed == single |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {len(users)} | {args.steps} | {result['train_seconds_mean']:.1f} | "
        f"{statistics.mean(p['examples'] for p in per_user):.1f} | {result['adapter_bytes_mean'] / 1e6:.2f} | "
        f"{result['load_ms_median']:.1f} | {result['set_adapter_ms_median']:.2f} | {mixed_s:.2f} | {single_s:.2f} | "
        f"{single_s / mixed_s:.2f}x | {result['mixed_equals_single']} |",
    ]
    md += [
        "",
        f"Decoding throughput with exactly {args.new_tokens} new tokens per row (end-of-sequence ignored):",
        "",
        "| dtype | mode | seconds (median) | tokens/s | vs one at a time, same dtype |",
        "|---|---|---:|---:|---:|",
    ]
    for dtype, res in by_dtype.items():
        for mode, label in (("mixed", f"{len(users)} users, one mixed-adapter batch"),
                            ("same", f"{len(users)} rows, one adapter, one batch"),
                            ("single", f"{len(users)} users one at a time")):  # fmt: skip
            f = res["fixed_length"][mode]
            md.append(f"| {dtype} | {label} | {f['seconds']:.2f} | {f['tokens_per_s']:.1f} | {f['speedup']:.2f}x |")
    md += [
        "",
        f"Best one-at-a-time ({best_single}) vs best mixed batch ({best_mixed}): **{best['speedup']:.2f}x**"
        + (
            f"; titles equal to {gen.dtype}'s: {best['outputs_equal_to_' + gen.dtype]:.0%}" if len(by_dtype) > 1 else ""
        ),
    ]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def inference(gen, prompts, names, new_tokens: int, repeats: int) -> dict:
    """End-to-end and fixed-length timings of one generator: a mixed-adapter batch vs one at a time."""
    cfg = GenerationConfig(max_new_tokens=new_tokens)
    gen.generate(prompts[:2], config=cfg, adapter=names[:2])  # warm-up (first mixed batch, kernels)
    mixed_runs, single_runs = [], []
    for _ in range(repeats):  # alternate, so background load hits both alike
        t = time.perf_counter()
        mixed = gen.generate(prompts, config=cfg, adapter=names)
        mixed_runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        singles = [gen.generate([p], config=cfg, adapter=n)[0] for p, n in zip(prompts, names, strict=True)]
        single_runs.append(time.perf_counter() - t)
    return {
        "mixed_batch_seconds": statistics.median(mixed_runs),
        "one_at_a_time_seconds": statistics.median(single_runs),
        "mixed_speedup": statistics.median(single_runs) / statistics.median(mixed_runs),
        "mixed_runs_seconds": mixed_runs,
        "one_at_a_time_runs_seconds": single_runs,
        "mixed_equals_single": mixed == singles,
        "outputs": singles,
        "fixed_length": fixed_length_throughput(gen, prompts, names, new_tokens, repeats),
    }


def fixed_length_throughput(gen, prompts, names, new_tokens: int, repeats: int) -> dict:
    """Tokens/s when every row decodes exactly ``new_tokens`` (no early stop), so a batch and
    one-at-a-time calls do the same work: the fair throughput comparison. Calls the PEFT model
    directly because GenerationConfig has no minimum length."""
    import torch

    tok = gen.tokenizer
    kw = {
        "min_new_tokens": new_tokens,
        "max_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": tok.pad_token_id,
    }

    def batch(adapter_names=None):
        enc = tok.apply_chat_template(prompts, add_generation_prompt=True, padding=True, return_tensors="pt",
                                      return_dict=True)  # fmt: skip
        if adapter_names is None:
            gen.model.set_adapter(names[0])
            return gen.model.generate(**enc, **kw)
        return gen.model.generate(**enc, adapter_names=adapter_names, **kw)

    def one_by_one():
        for name, p in zip(names, prompts, strict=True):
            enc = tok.apply_chat_template([p], add_generation_prompt=True, return_tensors="pt", return_dict=True)
            gen.model.set_adapter(name)
            gen.model.generate(**enc, **kw)

    runs = {"mixed": lambda: batch(names), "same": lambda: batch(None), "single": one_by_one}
    out: dict = {}
    with torch.inference_mode():
        for mode, fn in runs.items():
            fn()  # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            sec = statistics.median(times)
            out[mode] = {"seconds": sec, "runs": times, "tokens_per_s": len(prompts) * new_tokens / sec}
    for mode in out:
        out[mode]["speedup"] = out["single"]["seconds"] / out[mode]["seconds"]
    return out


if __name__ == "__main__":
    main()
