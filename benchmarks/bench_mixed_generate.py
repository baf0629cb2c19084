"""The evaluation harness's mixed-adapter batches: gathered LoRA against PEFT's ``adapter_names``.

Why: a per-user LoRA row of the suite generates and scores batches whose rows belong to
different users, each with an adapter. ``TransformersGenerator.generate`` and
``score_choices`` run such a batch through the gathered path (two ``bmm`` per LoRA layer,
:mod:`tailorlm.models.gathered_lora`) when every adapter is plain LoRA, and through PEFT's
per-adapter loop otherwise. This times both on the same batch, the two paths alternating so
the VM's drift hits them alike, and checks that they give the same greedy answers.

Setup: the packaged SmolLM2 in each ``--dtype``; ``--rows`` prompts as the service bench's
(a real Amazon review with a request to reply; synthetic text when ../shared/data is absent),
each with its own random r=8 LoRA adapter on q/v; ``--new-tokens`` greedy tokens; five
choices scored. Each cell is the median of ``--repeats`` timed calls after one warm-up.

``python benchmarks/bench_mixed_generate.py`` writes benchmarks/results/mixed_generate.json
and a markdown table beside it.
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

CHOICES = ["1", "2", "3", "4", "5"]


def _measure(dtype: str, rows: int, new_tokens: int, repeats: int) -> dict[str, Any]:
    from tailorlm.models.base import GenerationConfig

    with tempfile.TemporaryDirectory(prefix="bench-mixed-") as d:
        gen, names = _generator(dtype, rows, Path(d))
        convs = [[{"role": "user", "content": f"{ASKS['reply']}\n\n{r}"}] for r in _reviews(rows)]
        config = GenerationConfig(max_new_tokens=new_tokens)
        gathered = gen.gathered_lora
        times: dict[str, list[float]] = {f"{p}_{c}": [] for p in ("gathered", "peft") for c in ("generate", "score")}
        texts: dict[str, list[str]] = {}
        for rep in range(repeats + 1):
            for path in ("gathered", "peft"):
                gen.gathered_lora = gathered if path == "gathered" else None
                start = time.perf_counter()
                texts[path] = gen.generate(convs, config=config, adapter=names)
                middle = time.perf_counter()
                gen.score_choices(convs, CHOICES, adapter=names)
                if rep:  # the first round warms up
                    times[f"{path}_generate"].append(middle - start)
                    times[f"{path}_score"].append(time.perf_counter() - middle)
        gen.gathered_lora = gathered
    cell: dict[str, Any] = {"dtype": dtype, "rows": rows, "new_tokens": new_tokens}
    cell.update({f"{k}_s": round(statistics.median(v), 3) for k, v in times.items()})
    for call in ("generate", "score"):
        cell[f"{call}_speedup"] = round(cell[f"peft_{call}_s"] / cell[f"gathered_{call}_s"], 2)
    cell["same_greedy_answers"] = sum(a == b for a, b in zip(texts["gathered"], texts["peft"], strict=True))
    print(json.dumps(cell), flush=True)
    return cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="bfloat16,float32", help="comma-separated")
    ap.add_argument("--rows", type=int, default=8, help="prompts in the batch, each with its own adapter")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mixed_generate.json")
    args = ap.parse_args()
    cells = [_measure(dtype, args.rows, args.new_tokens, args.repeats) for dtype in args.dtype.split(",")]
    report = stamped(repeats=args.repeats, runs=cells)
    lines = [
        f"Mixed-adapter batch: {args.rows} rows, each its own LoRA adapter, "
        f"median of {args.repeats} ({report['when']})",
        "",
        "| dtype | generate, gathered s | generate, PEFT s | speedup | score, gathered s | score, PEFT s | speedup |"
        " same greedy answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c['dtype']} | {c['gathered_generate_s']} | {c['peft_generate_s']} | {c['generate_speedup']}x | "
            f"{c['gathered_score_s']} | {c['peft_score_s']} | {c['score_speedup']}x | "
            f"{c['same_greedy_answers']} / {c['rows']} |"
        )
    write(args.out, report, lines)


if __name__ == "__main__":
    main()
