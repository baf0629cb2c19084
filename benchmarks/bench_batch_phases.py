"""Where a mixed-adapter batch gains: prefill vs decode, one batch of N users vs one at a time.

bench_adapters.py times the whole request; this splits it. For each dtype and each output
length it times (a) the N prompts with 1 new token (prefill), (b) with ``--new-tokens``
tokens, as one mixed-adapter batch (PEFT ``adapter_names``, N distinct LoRA adapters) and
one user at a time (``set_adapter`` then generate). Decode time is (b) minus (a). Prompts
are real Amazon reviews (the title task's input); the adapters are r=8 LoRA on q/v with
random weights, since adapter values do not change the work done.

Writes benchmarks/results/batch_phases.json and .md.
Quick smoke run: ``python benchmarks/bench_batch_phases.py --users 2 --new-tokens 4 --dtypes float32``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--new-tokens", default="32,128", help="comma-separated output lengths")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--min-chars", type=int, default=800, help="reviews of at least this many characters")
    ap.add_argument("--max-chars", type=int, default=1800)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "batch_phases.json")
    args = ap.parse_args()
    if not AMAZON.is_file():
        raise SystemExit(f"needs the Amazon reviews at {AMAZON}")

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tailorlm.models.local import TransformersGenerator
    from tailorlm.settings import default_cache_dir

    reviews: list[str] = []
    with gzip.open(AMAZON, "rt") as f:
        for line in f:
            text = json.loads(line).get("reviewText", "")
            if args.min_chars < len(text) < args.max_chars:
                reviews.append(text)
            if len(reviews) == args.users:
                break
    prompts = [[{"role": "user", "content": f"Write a short title for this review:\n{t}"}] for t in reviews]
    base = TransformersGenerator("smollm2", cache_dir=default_cache_dir())
    tok = base.tokenizer
    enc = tok.apply_chat_template(prompts, add_generation_prompt=True, padding=True, return_tensors="pt",
                                  return_dict=True)  # fmt: skip
    singles = [tok.apply_chat_template([p], add_generation_prompt=True, return_tensors="pt", return_dict=True)
               for p in prompts]  # fmt: skip
    lengths = enc["attention_mask"].sum(1).tolist()
    names = [f"user{i}" for i in range(len(prompts))]
    lens = [int(n) for n in args.new_tokens.split(",")]
    results = []
    for dtype in args.dtypes.split(","):
        model = AutoModelForCausalLM.from_pretrained(base.path, dtype=getattr(torch, dtype), local_files_only=True)
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        peft_model = get_peft_model(model, cfg, adapter_name=names[0])
        for n in names[1:]:
            peft_model.add_adapter(n, cfg)
        peft_model.eval()

        def batch(n_new: int, m=peft_model) -> float:
            t = time.perf_counter()
            m.generate(**enc, adapter_names=names, **_fixed(n_new, tok))
            return time.perf_counter() - t

        def one_at_a_time(n_new: int, m=peft_model) -> float:
            t = time.perf_counter()
            for name, e in zip(names, singles, strict=True):
                m.set_adapter(name)
                m.generate(**e, **_fixed(n_new, tok))
            return time.perf_counter() - t

        with torch.inference_mode():
            batch(2)  # warm-up
            one_at_a_time(2)
            prefill = {"batch": batch(1), "one_at_a_time": one_at_a_time(1)}
            for n_new in lens:
                total = {"batch": batch(n_new), "one_at_a_time": one_at_a_time(n_new)}
                decode = {k: total[k] - prefill[k] for k in total}
                steps = n_new - 1
                results.append({
                    "dtype": dtype,
                    "new_tokens": n_new,
                    "prefill_s": prefill,
                    "total_s": total,
                    "decode_s": decode,
                    "decode_ms_per_step": {"batch": 1e3 * decode["batch"] / steps,
                                           "one_at_a_time": 1e3 * decode["one_at_a_time"] / (steps * len(names))},
                    "speedup_total": total["one_at_a_time"] / total["batch"],
                    "speedup_decode": decode["one_at_a_time"] / decode["batch"],
                })  # fmt: skip
                print(json.dumps(results[-1]), flush=True)
    out = {
        "users": len(names),
        "prompt_tokens": lengths,
        "results": results,
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    md = [
        f"{len(names)} users, prompts of {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}),"
        " one mixed-adapter batch vs one at a time:",
        "",
        "| dtype | new tokens | prefill s (batch / one at a time) | decode s (batch / one at a time) |"
        " total s (batch / one at a time) | speedup, decode | speedup, total |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    for r in results:
        p, d, t = r["prefill_s"], r["decode_s"], r["total_s"]
        md.append(
            f"| {r['dtype']} | {r['new_tokens']} | {p['batch']:.2f} / {p['one_at_a_time']:.2f} | "
            f"{d['batch']:.2f} / {d['one_at_a_time']:.2f} | {t['batch']:.2f} / {t['one_at_a_time']:.2f} | "
            f"{r['speedup_decode']:.2f}x | {r['speedup_total']:.2f}x |"
        )
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _fixed(n_new: int, tok) -> dict:
    return {"min_new_tokens": n_new, "max_new_tokens": n_new, "do_sample": False, "pad_token_id": tok.pad_token_id}


if __name__ == "__main__":
    main()
