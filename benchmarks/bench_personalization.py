"""Non-parametric personalization on real data: every method beside the baselines, on one split.

Runs ``tailorlm.eval.run_method`` over a grid of (task, method, predictor) on the
datasets in ../shared/data, each task with one user-based split (unseen users;
each one's latest example is the query), and writes JSON plus a Markdown table.

    python benchmarks/bench_personalization.py --users 100 --gen-users 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from tailorlm.data import Store
from tailorlm.data.loaders import load_dataset
from tailorlm.eval import run_method
from tailorlm.models import SentenceTransformerEmbedder, TransformersGenerator
from tailorlm.personalize import Query
from tailorlm.personalize.render import approx_tokens
from tailorlm.retrieval import load_history
from tailorlm.settings import default_cache_dir
from tailorlm.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TAILORLM_SHARED_DATA", REPO.parent / "shared" / "data"))

# (task, method spec, predictor, config overrides, users key)
RATING_METHODS = ["identity", "rag-bm25", "rag-dense", "rag-hybrid", "recency", "profile", "persona",
                  "rag-bm25+profile"]  # fmt: skip
GRID: list[tuple[str, str, str, dict, str]] = [
    # Amazon rating: cheap baselines and retrieval-only predictors (no language model).
    ("amazon-rating", "identity", "majority", {}, "users"),
    ("amazon-rating", "identity", "user-mean", {}, "users"),
    *[("amazon-rating", m, "retrieval-vote", {}, "users") for m in ("rag-bm25", "rag-dense", "rag-hybrid", "recency")],
    # POPQUORN: the three granularities on held-out annotators (no model: retrieval vote).
    ("popquorn-offensiveness", "identity", "majority", {}, "users"),
    ("popquorn-offensiveness", "identity", "user-mean", {}, "users"),
    ("popquorn-offensiveness", "rag-bm25", "retrieval-vote", {"rag-bm25": {"min_user_items": 10**6, "k": 8}},
     "users"),  # global scope: other annotators' ratings
    *[("popquorn-offensiveness", "rag-bm25", "retrieval-vote",
       {"rag-bm25": {"min_user_items": 10**6, "k": 8, "persona_by": attr}}, "users")
      for attr in ("gender", "age_band", "race", "cluster")],
    ("popquorn-offensiveness", "rag-bm25", "retrieval-vote", {"rag-bm25": {"k": 8}}, "users"),  # user scope
    # Persona-Chat: with and without the persona facts (and earlier turns) in the prompt.
    ("personachat-response", "identity", "generate", {}, "gen_users"),
    ("personachat-response", "rag-bm25", "generate", {}, "gen_users"),
    ("personachat-response", "recency", "generate", {"recency": {"k": 8}}, "gen_users"),
    # Amazon rating with the model: free generation (naive) and constrained choice.
    ("amazon-rating", "identity", "generate", {}, "model_users"),
    *[("amazon-rating", m, "choice-calibrated", {}, "model_users") for m in RATING_METHODS],
    ("amazon-rating", "rag-bm25", "choice", {}, "model_users"),
    # Amazon review titles (generation).
    *[("amazon-title", m, "generate", {}, "gen_users") for m in RATING_METHODS],
    # POPQUORN with the model.
    ("popquorn-offensiveness", "identity", "choice-calibrated", {}, "gen_users"),
    ("popquorn-offensiveness", "rag-bm25", "choice-calibrated", {"rag-bm25": {"k": 8}}, "gen_users"),
]  # fmt: skip

LOADS = [
    ("amazon", "amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz"),
    ("popquorn", "popquorn-offensiveness/offensiveness_raw_data.csv"),
    ("personachat", "personachat/valid_self_original_no_cands.txt"),
]


def _row_label(method: str, predictor: str, overrides: dict) -> str:
    cfg = next(iter(overrides.values()), {})
    scope = ""
    if cfg.get("min_user_items", 0) >= 10**6:
        scope = f" [persona: {cfg['persona_by']}]" if cfg.get("persona_by") else " [global]"
    elif cfg:
        scope = " [user, k=" + str(cfg.get("k", 4)) + "]"
    return f"{method}{scope} / {predictor}"


def whole_history_tokens(store: Store, result: dict, task_name: str) -> float:
    """Prompt tokens if every eligible history entry were put in the prompt (no retrieval, no budget)."""
    task = get_task(task_name)
    totals = []
    for row in result["rows"]:
        ex = next(
            e for e in store.get_examples(task=task_name, user_id=row["user_id"]) if e.example_id == row["example_id"]
        )
        q = Query.from_example(ex)
        item = q.metadata.get("item_id")
        hist = load_history(
            store,
            user_id=ex.user_id,
            source=task.history_source,
            doc_kind=task.history_kind,
            before=q.timestamp,
            exclude_ids=q.exclude_doc_ids,
            exclude_items=[item] if item else [],
        )
        text = " ".join(f"{e.title or ''} {e.text} {e.rating or ''}" for e in hist)
        totals.append(approx_tokens(text) + approx_tokens(task.request(q.text)) + approx_tokens(task.system))
    return sum(totals) / max(1, len(totals))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100, help="evaluated users for cheap rows")
    ap.add_argument("--gen-users", type=int, default=40, help="evaluated users for rows that generate text")
    ap.add_argument("--model-users", type=int, default=60, help="evaluated users for rating rows that use the model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="run only tasks containing this string")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "personalization.json")
    args = ap.parse_args()
    console = Console(stderr=True)
    if not DATA.is_dir():
        console.print(f"{DATA} not found: nothing to benchmark")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="tailorlm-bench-"))
    store = Store(f"sqlite:///{tmp / 'bench.db'}")
    for fmt, rel in LOADS:
        load_dataset(store, fmt, DATA / rel)
    generator = TransformersGenerator("smollm2", cache_dir=default_cache_dir())
    embedder = SentenceTransformerEmbedder()
    grid = [g for g in GRID if args.only is None or args.only in g[0]]
    rows: list[dict] = []
    report = {
        "benchmark": "personalization",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "generator": generator.name,
        "embedder": embedder.name,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with Progress(console=console) as bar:
        overall = bar.add_task("grid", total=len(grid))
        for task, method, predictor, overrides, users_key in grid:
            n = {"users": args.users, "gen_users": args.gen_users, "model_users": args.model_users}[users_key]
            sub = bar.add_task(f"{task} {method} {predictor}", total=None)
            start = time.perf_counter()
            res = _run(store, task, method, predictor, overrides, n, args.seed, generator, embedder,
                       lambda d, t, s=sub: bar.update(s, completed=d, total=t))  # fmt: skip
            bar.remove_task(sub)
            out = res.to_dict()
            out["label"] = _row_label(method, predictor, overrides)
            out["overrides"] = overrides
            out["whole_history_tokens"] = whole_history_tokens(store, out, task)
            out["wall_s"] = time.perf_counter() - start
            rows.append(out)
            console.print(
                f"{task:24s} {out['label']:45s} {json.dumps(_short(out['metrics']))} {out['wall_s']:.0f}s", markup=False
            )
            bar.advance(overall)
            # Saved after every row, so an interrupted run keeps what it measured.
            args.out.write_text(json.dumps(report, indent=1))
            args.out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return 0


def _run(store, task, method, predictor, overrides, n, seed, generator, embedder, progress):
    return run_method(
        store,
        method=method,
        task=task,
        n_users=n,
        seed=seed,
        predictor=predictor,
        generator=generator,
        embedder=embedder,
        overrides=overrides,
        progress=progress,
    )


def _short(metrics: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items()}


def markdown(report: dict) -> str:
    lines = ["| task | method / predictor | n | MAE | RMSE | unparsable | ROUGE-1 | ROUGE-L | prompt tokens | "
             "whole-history tokens | scopes |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in report["results"]:
        m = r["metrics"]
        scopes: dict[str, int] = {}
        for row in r["rows"]:
            scopes[row["scope"]] = scopes.get(row["scope"], 0) + 1

        def f(key: str, m: dict = m) -> str:
            return f"{m[key]:.3f}" if key in m else ""

        lines.append(
            f"| {r['task']} | {r['label']} | {m['n']} | {f('mae')} | {f('rmse')} | {f('unparsable')} | {f('rouge1')} | "
            f"{f('rougeL')} | {m['prompt_tokens']:.0f} | {r['whole_history_tokens']:.0f} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(scopes.items()))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
