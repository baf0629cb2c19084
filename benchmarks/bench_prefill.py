"""Prefilling a burst of arrivals: one after another, left-padded in one pass, or packed end to end.

Why: prefill is compute-bound on a CPU, and a burst of requests (users whose answers ended on
the same decode step) waits for all of them. One pass over several prompts uses the matrix
units better than several passes (bf16 on AMX most of all); left padding wastes the padding's
compute, packing does not. This measures the three ways of joining ``k`` prompts to the decode
batch (:meth:`ContinuousBatch.add` each, :meth:`ContinuousBatch.add_many` padded, and packed)
on the real model, with a LoRA adapter per prompt (gathered) like the service's users.

Setup: the packaged SmolLM2 in ``--dtype`` (both by default), prompts as the service bench's
(a real Amazon review with a request to reply, 93-191 tokens; synthetic text when
../shared/data is absent), ``--adapters`` random r=8 LoRA adapters on q/v (0: the base model
only). Each cell is the median of ``--repeats`` timed passes after one warm-up, the three
methods alternating so the VM's drift hits them alike. "packed / one alone" is the floor on the
time to first token of a burst's last request relative to a lone request's prefill: no
schedule gives it its first token before every prompt of the burst has been prefilled.

Writes the JSON (``--out``, default benchmarks/results/prefill.json) and a markdown table
beside it. ``python benchmarks/bench_prefill.py [--sizes 2,3,5,9] [--dtype bfloat16]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _report import stamped, write  # noqa: E402
from bench_serve_batching import ASKS, _reviews  # noqa: E402


def _generator(dtype: str, adapters: int, folder: Path) -> tuple[Any, list[str | None]]:
    """The generator with ``adapters`` random LoRA adapters loaded, and each prompt's adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tailorlm.models import build_generator
    from tailorlm.settings import load_settings

    os.environ["TAILORLM_CONFIG"] = str(folder / "no-config.toml")
    gen = build_generator(load_settings(generator={"dtype": dtype}))
    if not adapters:
        return gen, [None]
    base = AutoModelForCausalLM.from_pretrained(gen.path, local_files_only=True)
    model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    names = []
    for i in range(adapters):
        torch.manual_seed(i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 2e-3)
        path = folder / f"a{i}"
        model.save_pretrained(path)
        gen.add_adapter(f"a{i}", path / "default" if (path / "default").is_dir() else path)
        names.append(f"a{i}")
    return gen, names


def _measure(gen: Any, adapters: list[str | None], sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    from tailorlm.models.base import GenerationConfig
    from tailorlm.models.continuous import ContinuousBatch
    from tailorlm.models.inputs import ModelInput

    reviews = _reviews(max(sizes))
    rows = [
        ModelInput([{"role": "user", "content": f"{ASKS['reply']}\n\n{r}"}], adapters[i % len(adapters)])
        for i, r in enumerate(reviews)
    ]
    cfg = GenerationConfig(max_new_tokens=64)
    methods = {
        "one_after_another": lambda b, items: [b.add(*item) for item in items],
        "padded": lambda b, items: b.add_many(items),
        "packed": lambda b, items: b.add_many(items),
    }
    out = []
    for k in sizes:
        items = [(i, rows[i], cfg) for i in range(k)]
        times: dict[str, list[float]] = {m: [] for m in methods}
        for rep in range(repeats + 1):
            for method, run in methods.items():
                batch = ContinuousBatch(gen)
                if method == "padded":
                    batch._packable = lambda names: False  # type: ignore[method-assign]
                start = time.perf_counter()
                run(batch, items)
                if rep:  # the first round warms up
                    times[method].append(time.perf_counter() - start)
        template = gen.tokenizer.apply_chat_template
        ids = [template(r.messages, add_generation_prompt=True, return_dict=True)["input_ids"] for r in rows[:k]]
        tokens = sum(map(len, ids))
        cell = {"prompts": k, "tokens": tokens}
        cell.update({f"{m}_ms": round(statistics.median(v) * 1000, 1) for m, v in times.items()})
        cell["packed_vs_one_after_another"] = round(cell["packed_ms"] / cell["one_after_another_ms"], 3)
        cell["packed_vs_padded"] = round(cell["packed_ms"] / cell["padded_ms"], 3)
        # The earliest the burst's last request can have its first token, against a lone request's
        # prefill (the mean of the k alone): every prompt must be prefilled before that token.
        cell["last_first_token_vs_lone"] = round(cell["packed_ms"] * k / cell["one_after_another_ms"], 2)
        print(json.dumps(cell), flush=True)
        out.append(cell)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2,3,5,9", help="prompts per burst")
    ap.add_argument("--dtype", default="bfloat16,float32", help="comma-separated")
    ap.add_argument("--adapters", type=int, default=8, help="random LoRA adapters, one per prompt in turn")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "prefill.json")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[str, Any] = {}
    for dtype in args.dtype.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-prefill-") as d:
            gen, adapters = _generator(dtype, args.adapters, Path(d))
            runs[dtype] = _measure(gen, adapters, sizes, args.repeats)
            del gen
    report = stamped(adapters=args.adapters, repeats=args.repeats, runs=runs)
    lines = [
        f"Prefill of a burst, {args.adapters} LoRA adapters, median of {args.repeats} ({report['when']})",
        "",
        "| dtype | prompts | tokens | one after another ms | padded ms | packed ms | packed / one after another |"
        " packed / padded | packed / one alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype, cells in report["runs"].items():
        for c in cells:
            lines.append(
                f"| {dtype} | {c['prompts']} | {c['tokens']} | {c['one_after_another_ms']} | {c['padded_ms']} | "
                f"{c['packed_ms']} | {c['packed_vs_one_after_another']:.2f} | {c['packed_vs_padded']:.2f} | "
                f"{c['last_first_token_vs_lone']:.2f}x |"
            )
    write(args.out, report, lines)


if __name__ == "__main__":
    main()
