"""MovieLens-100K downstream rows: the classic anchors under published protocols, then LLM re-ranking.

- Rating prediction: Cornac's biased MF ("SVD") on a seeded random 80/20 split of all
  ratings (the protocol behind the published Surprise SVD figure, RMSE .934 / MAE .737)
  and on a per-user temporal 80/20 split, beside the global / user / item mean.
- Top-10 recommendation under RecBole's defaults (random order, 80/10/10 per user, full
  ranking, every rating a positive): BPR and most-popular on every user (published
  RecBole BPR on ml-100k: NDCG@10 .2768, HR@10 .7614). Then BPR's top candidates
  re-ranked by the local SmolLM2-135M for ``--rerank-users`` users, with each prompt in
  ``--rerank``, beside the CF order and a random re-ranking of the same candidates.

Every row carries a 95% percentile-bootstrap CI; re-rankers carry a paired bootstrap
test against the CF order on the same users. Writes JSON and Markdown.

    python benchmarks/bench_recsys.py --rerank-users 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TAILORLM_SHARED_DATA", REPO.parent / "shared" / "data"))
PUBLISHED = {
    "svd": {"rmse": 0.934, "mae": 0.737, "source": "Surprise SVD, ML-100K, 5-fold CV (random 20% folds)"},
    "bpr": {"ndcg@10": 0.2768, "hit@10": 0.7614, "source": "RecBole BPR, ml-100k, default protocol"},
}


def _ci(values: list[float], *, rmse: bool = False) -> dict[str, float]:
    from tailorlm.eval.stats import bootstrap_ci, statistic_for

    _, stat = statistic_for("rmse" if rmse else "mean")
    return bootstrap_ci(values, statistic=stat).to_dict()


def _fmt(ci: dict[str, float]) -> str:
    return f"{ci['estimate']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"


def rating_rows(store: Any, seed: int) -> list[dict[str, Any]]:
    from tailorlm.eval.recsys import rating_anchor

    rows = []
    for split in ("random", "temporal"):
        out = rating_anchor(store, split=split, seed=seed)
        rows.append(
            {
                "split": split,
                "model": out["model"],
                "params": out["params"],
                "n_train": out["n_train"],
                "n_test": out["n_test"],
                "rmse": _ci(out["sq_errors"], rmse=True),
                "mae": _ci(out["abs_errors"]),
                "baselines": out["baselines"],
                "seconds": round(out["seconds"], 1),
            }
        )
        print(f"rating [{split}] SVD RMSE {out['rmse']:.4f} MAE {out['mae']:.4f} ({out['seconds']:.0f} s)", flush=True)
    return rows


def _model_rows(out: dict[str, Any], names: list[str]) -> dict[str, Any]:
    rows = {}
    for name in names:
        per = out["models"][name]["per_user"]
        rows[name] = {m: _ci(v) for m, v in per.items()}
    return rows


def rerank_rows(store: Any, setup: Any, args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Each re-ranker in turn; the report is rewritten after each, so a cut-short run keeps what finished."""
    from tailorlm.eval.recsys import llm_reranker, recommendation
    from tailorlm.eval.stats import paired_test
    from tailorlm.models import TransformersGenerator

    generator = TransformersGenerator()
    print(f"model {generator.name} loaded in {generator.load_seconds:.0f} s", flush=True)
    rows = report["rerank"]
    for part in args.rerank.split(","):
        part, _, tuned = part.partition("@")
        spec, _, liked = part.partition(":")
        start = time.perf_counter()
        overrides = {p: {"summary_tokens": args.summary_tokens} for p in spec.split("+") if p == "profile"}
        rr = llm_reranker(store, generator, method_spec=spec, liked=int(liked or 0), overrides=overrides)
        training = None
        if tuned:
            if tuned != "tallrec":
                raise SystemExit(f"unknown re-ranker suffix @{tuned} (only @tallrec)")
            training = train_tallrec_adapter(generator, setup, rr, args)
            rr = llm_reranker(
                store, generator, method_spec=spec, liked=int(liked or 0), overrides=overrides, adapter="tallrec"
            )

        def tick(done: int, total: int, name: str = rr.name, t0: float = start) -> None:
            if done % 10 == 0 or done == total:
                print(f"  {name}: {done}/{total} users, {time.perf_counter() - t0:.0f} s", flush=True)

        out = recommendation(
            store,
            setup=setup,
            n_users=args.rerank_users,
            k=args.k,
            candidates=args.candidates,
            rerank=rr,
            seed=args.seed,
            progress=tick,
        )
        per = out["models"]
        ndcg = f"ndcg@{args.k}"
        rows.append(
            {
                "reranker": rr.name,
                "method_spec": spec,
                "overrides": overrides,
                "liked": int(liked or 0),
                "users": out["users"],
                "candidates": {m: _ci(v) for m, v in out["candidates"]["per_user"].items()},
                "rows": _model_rows(out, ["bpr", "random-rerank", "rerank", "most-popular"]),
                "vs_bpr": {
                    m: paired_test(per["rerank"]["per_user"][m], per["bpr"]["per_user"][m]).to_dict()
                    for m in (ndcg, f"hit@{args.k}")
                },
                "random_vs_bpr": paired_test(
                    per["random-rerank"]["per_user"][ndcg], per["bpr"]["per_user"][ndcg]
                ).to_dict(),
                "context_tokens": sum(r["context_tokens"] for r in rr.records_.values()) / max(1, len(rr.records_)),
                "scoring": sorted({r.get("scoring", "") for r in rr.records_.values()}),
                "tallrec": training,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(
            f"rerank {rr.name}: {ndcg} {per['rerank']['metrics'][ndcg]:.4f} vs CF {per['bpr']['metrics'][ndcg]:.4f} "
            f"({rows[-1]['seconds']:.0f} s)",
            flush=True,
        )
        write(report, args.out_dir)


def train_tallrec_adapter(generator: Any, setup: Any, rr: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Train a TALLRec adapter on users outside the evaluated sample and load it as "tallrec"."""
    from tailorlm.eval.recsys import TallRecConfig, tallrec_rows, train_tallrec
    from tailorlm.eval.recsys.recommend import evaluated_users

    evaluated = [setup.users[u] for u in evaluated_users(setup, args.rerank_users, args.seed)]
    cfg = TallRecConfig(users=args.tallrec_users, steps=args.tallrec_steps, candidates=args.candidates, seed=args.seed)
    rows = tallrec_rows(setup, rr, exclude_users=evaluated, cfg=cfg)
    print(f"TALLRec: {len(rows)} questions from {len({r.user_id for r in rows})} training users", flush=True)

    def tick(step: int, steps: int, loss: float) -> None:
        if step % 8 == 0 or step == steps:
            print(f"  TALLRec step {step}/{steps}: loss {loss:.3f}", flush=True)

    folder = Path(tempfile.mkdtemp(prefix="tallrec-"))
    report = train_tallrec(generator, rows, folder, cfg=cfg, progress=tick)
    if "tallrec" in generator.adapters:
        generator.delete_adapter("tallrec")
    generator.add_adapter("tallrec", folder)
    print(f"TALLRec adapter trained in {report['seconds']:.0f} s", flush=True)
    return report


def write(report: dict[str, Any], out_dir: Path) -> None:
    report["seconds"] = time.perf_counter() - report["started"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "recsys.json").write_text(json.dumps({k: v for k, v in report.items() if k != "started"}, indent=1))
    (out_dir / "recsys.md").write_text(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    k = report["args"]["k"]
    nd, hr, mrr = f"ndcg@{k}", f"hit@{k}", f"mrr@{k}"
    lines = [
        "# MovieLens-100K: rating prediction and top-k recommendation",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}; total {report['seconds']:.0f} s (data load {report['load_seconds']:.0f} s)",
        "",
        "## Rating prediction (RMSE / MAE, 95% bootstrap CI)",
        "",
        "| split | model | n test | RMSE | MAE | published |",
        "|---|---|---:|---|---|---|",
    ]
    for r in report["rating"]:
        pub = PUBLISHED["svd"]
        published = f"RMSE {pub['rmse']}, MAE {pub['mae']} ({pub['source']})" if r["split"] == "random" else ""
        lines.append(
            f"| {r['split']} | SVD (Cornac biased MF) | {r['n_test']} | {_fmt(r['rmse'])} | {_fmt(r['mae'])} "
            f"| {published} |"
        )
        for name, b in r["baselines"].items():
            lines.append(f"| {r['split']} | {name} | {r['n_test']} | {b['rmse']:.4f} | {b['mae']:.4f} | |")
    rec = report["recommendation"]
    lines += [
        "",
        f"## Top-{k} recommendation, RecBole protocol, all {rec['n_users']} users (95% bootstrap CI)",
        "",
        f"Split: {rec['setup']['n_train']} train / {rec['setup']['n_valid']} valid / {rec['setup']['n_test']} test "
        f"interactions; BPR best epoch {rec['setup']['bpr']['best_epoch']} (valid MRR@10 "
        f"{rec['setup']['bpr']['valid_mrr@10']:.4f}), params {rec['setup']['bpr']['params']}.",
        "",
        f"| model | NDCG@{k} | HR@{k} | MRR@{k} | recall@{k} | precision@{k} | published |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rec["rows"].items():
        pub = PUBLISHED["bpr"]
        published = f"NDCG@10 {pub['ndcg@10']}, HR@10 {pub['hit@10']} ({pub['source']})" if name == "bpr" else ""
        lines.append(
            f"| {name} | {_fmt(r[nd])} | {_fmt(r[hr])} | {r[mrr]['estimate']:.4f} | {r[f'recall@{k}']['estimate']:.4f} "
            f"| {r[f'precision@{k}']['estimate']:.4f} | {published} |"
        )
    lines += [
        "",
        f"BPR minus most-popular, {nd}: {rec['bpr_vs_pop']['difference']:+.4f} "
        f"[{rec['bpr_vs_pop']['low']:+.4f}, {rec['bpr_vs_pop']['high']:+.4f}], p = {rec['bpr_vs_pop']['p_value']:.4f}.",
    ]
    if report["rerank"]:
        first = report["rerank"][0]
        c = report["args"]["candidates"]
        lines += [
            "",
            f"## LLM re-ranking of BPR's top {c} ({len(first['users'])} users, SmolLM2-135M, pointwise yes/no)",
            "",
            f"Candidate bound on the same users: hit@{c} {_fmt(first['candidates'][f'hit@{c}'])}, "
            f"recall@{c} {_fmt(first['candidates'][f'recall@{c}'])}: re-ranking can reach at most that HR.",
            "",
            f"| ranking of the {c} candidates | NDCG@{k} | HR@{k} | MRR@{k} | vs CF order, NDCG@{k} (paired) "
            "| context tokens | seconds |",
            "|---|---|---|---|---|---:|---:|",
        ]
        for name in ("most-popular", "bpr", "random-rerank"):
            r = first["rows"][name]
            label = {
                "most-popular": "most-popular (full ranking, for scale)",
                "bpr": "CF order (BPR)",
                "random-rerank": "random order",
            }[name]
            paired = "" if name != "random-rerank" else _paired(first["random_vs_bpr"])
            lines.append(f"| {label} | {_fmt(r[nd])} | {_fmt(r[hr])} | {r[mrr]['estimate']:.4f} | {paired} | | |")
        for rr in report["rerank"]:
            r = rr["rows"]["rerank"]
            lines.append(
                f"| {rr['reranker']} | {_fmt(r[nd])} | {_fmt(r[hr])} | {r[mrr]['estimate']:.4f} | "
                f"{_paired(rr['vs_bpr'][nd])} | {rr['context_tokens']:.0f} | {rr['seconds']:.0f} |"
            )
        lines += [
            "",
            "`llm[identity]`: no user information (the model's generic taste); `+likedN`: the user's N highest-rated "
            "training movies in the prompt; `llm[profile...]`: stored attributes and an LLM-written summary (at most "
            f"{report['args']['summary_tokens']} tokens) of the user's most recent training ratings as well. Valid "
            "and test interactions are excluded from every prompt. Pointwise scores: log P(Yes) - log P(No) to "
            "'Would this user enjoy the movie <title>?'; ties keep the CF order. `@tallrec`: the same prompt answered "
            "by a LoRA adapter tuned TALLRec-style on training users outside the evaluated sample (their BPR "
            "candidates over unseen-in-train items, Yes for their valid interactions, balanced).",
        ]
    return "\n".join(lines) + "\n"


def _paired(p: dict[str, float]) -> str:
    return f"{p['difference']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}], p={p['p_value']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--rerank-users", type=int, default=50, help="users for LLM re-ranking (0: skip it)")
    ap.add_argument(
        "--rerank",
        default="identity:0,identity:10,profile:10",
        help="comma-separated METHOD_SPEC:LIKED re-rankers (LIKED = highest-rated training movies in the prompt); "
        "a suffix @tallrec first tunes a TALLRec adapter on that prompt (users outside the evaluated sample)",
    )
    ap.add_argument("--summary-tokens", type=int, default=48, help="budget of the profile method's LLM summary")
    ap.add_argument("--tallrec-users", type=int, default=128, help="training users of a SPEC:LIKED@tallrec re-ranker")
    ap.add_argument("--tallrec-steps", type=int, default=64, help="LoRA steps (batch 4) of a @tallrec re-ranker")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    from tailorlm.data import Store
    from tailorlm.data.loaders import load_dataset
    from tailorlm.eval.recsys import prepare_recommendation, recommendation
    from tailorlm.eval.stats import paired_test

    path = args.data_dir / "movielens-100k"
    if not path.is_dir():
        sys.exit(f"MovieLens-100K not found at {path} (set TAILORLM_SHARED_DATA or --data-dir)")
    report: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "published": PUBLISHED,
        "started": time.perf_counter(),
        "rerank": [],
    }
    with tempfile.TemporaryDirectory(prefix="tailorlm-recsys-") as tmp:
        store = Store(f"sqlite:///{tmp}/store.db")
        load_dataset(store, "movielens", path)
        report["load_seconds"] = time.perf_counter() - report["started"]
        print(f"loaded ML-100K in {report['load_seconds']:.0f} s", flush=True)
        report["rating"] = rating_rows(store, args.seed)
        setup = prepare_recommendation(store, seed=args.seed)
        full = recommendation(store, setup=setup, k=args.k, candidates=args.candidates, seed=args.seed)
        nd = f"ndcg@{args.k}"
        report["recommendation"] = {
            "n_users": len(full["users"]),
            "protocol": full["protocol"],
            "setup": full["setup"],
            "rows": _model_rows(full, ["most-popular", "bpr"]),
            "bpr_vs_pop": paired_test(
                full["models"]["bpr"]["per_user"][nd], full["models"]["most-popular"]["per_user"][nd]
            ).to_dict(),
        }
        print(f"BPR {nd} {full['models']['bpr']['metrics'][nd]:.4f} (setup {setup.info['seconds']:.0f} s)", flush=True)
        write(report, args.out_dir)
        if args.rerank_users > 0:
            rerank_rows(store, setup, args, report)
        store.close()
    write(report, args.out_dir)
    print(markdown(report))


if __name__ == "__main__":
    main()
