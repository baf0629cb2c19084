"""Does bf16 decoding keep quality? The same bench suite run twice, once per dtype, compared row by row.

Usage:
    python benchmarks/compare_dtypes.py [--a benchmarks/results/dtype/float32]
                                        [--b benchmarks/results/dtype/bfloat16]
                                        [--out benchmarks/results/dtype] [--seed 0]

Why a separate script: ``tailorlm bench`` compares methods against a baseline *within* one
run, but a dtype is a setting of the whole run, so two runs of ``benchmarks/suites/dtype.toml``
(``TAILORLM_GENERATOR__DTYPE=float32`` / ``bfloat16``) must be compared *across* files.
Both runs evaluate the same queries (same split, same seed), so the comparison is paired:
rows are matched by (task, name) and examples by (user_id, example_id), never by position,
and a row whose two runs did not evaluate exactly the same examples is refused rather than
compared on a silent subset. The statistics are the project's own
(:func:`tailorlm.eval.stats.paired_test`, the paired bootstrap the suite reports use).

Per row: n, each per-example metric's value in A and B, B - A with its 95% bootstrap CI and
p-value, the share of examples whose answer text is identical, and generated tokens/s in
each run. Corpus-level metrics (BLEU) have no per-example values, so no CI: they are copied
into compare.json as reported. Writes ``compare.json`` and ``compare.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tailorlm.eval.stats import paired_test, statistic_for

RESULTS = Path(__file__).resolve().parent / "results" / "dtype"
Key = tuple[str, str]  # (user_id, example_id) of an example; (task, name) of a row


def load_run(path: Path) -> dict[str, Any]:
    """A bench report: ``path`` is its results.json or the folder holding it."""
    file = path / "results.json" if path.is_dir() else path
    report = json.loads(file.read_text())
    if not isinstance(report.get("results"), list):
        raise ValueError(f"{file}: no 'results' list (not a tailorlm bench report)")
    return report


def rows_by_name(report: dict[str, Any], label: str) -> dict[Key, dict[str, Any]]:
    """The report's rows keyed by (task, name); a duplicate key would make pairing ambiguous."""
    out: dict[Key, dict[str, Any]] = {}
    for row in report["results"]:
        key = (row["task"], row["name"])
        if key in out:
            raise ValueError(f"run {label}: two rows named {key}")
        out[key] = row
    return out


def example_index(row: dict[str, Any], label: str) -> dict[Key, int]:
    """Position of each (user_id, example_id) in ``row["rows"]`` (the order of ``per_example``)."""
    examples = row.get("rows") or []
    index = {(str(r["user_id"]), str(r["example_id"])): i for i, r in enumerate(examples)}
    where = f"run {label}, row {row['task']} / {row['name']}"
    if len(index) != len(examples):
        raise ValueError(f"{where}: duplicate (user_id, example_id) among its {len(examples)} examples")
    for metric, values in row.get("per_example", {}).items():
        if len(values) != len(examples):
            raise ValueError(f"{where}: per_example[{metric!r}] has {len(values)} values for {len(examples)} examples")
    return index


def _sample(keys: set[Key], k: int = 3) -> str:
    return ", ".join(f"{u}/{e}" for u, e in sorted(keys)[:k]) + (" ..." if len(keys) > k else "")


def pair_examples(row_a: dict[str, Any], row_b: dict[str, Any]) -> list[tuple[int, int]]:
    """(index in A, index in B) of each example, in A's order; both runs must hold the same examples."""
    idx_a, idx_b = example_index(row_a, "A"), example_index(row_b, "B")
    if idx_a.keys() != idx_b.keys():
        only_a, only_b = set(idx_a) - set(idx_b), set(idx_b) - set(idx_a)
        raise ValueError(
            f"row {row_a['task']} / {row_a['name']}: the runs evaluated different examples "
            f"({len(only_a)} only in A: {_sample(only_a) or '-'}; {len(only_b)} only in B: {_sample(only_b) or '-'}); "
            "were they run with the same suite, data and seed?"
        )
    if not idx_a:
        raise ValueError(f"row {row_a['task']} / {row_a['name']}: no examples to compare")
    pairs = [(i, idx_b[k]) for k, i in idx_a.items()]
    for i, j in pairs:
        if row_a["rows"][i].get("gold") != row_b["rows"][j].get("gold"):
            ex = row_a["rows"][i]
            raise ValueError(
                f"row {row_a['task']} / {row_a['name']}: example {ex['user_id']}/{ex['example_id']} "
                "has a different gold answer in the two runs (different data?)"
            )
    return pairs


def metric_names(row_a: dict[str, Any], row_b: dict[str, Any]) -> list[str]:
    """Metrics with per-example values in both runs (the ones with a CI), in A's order."""
    names = list(row_a.get("ci") or row_a.get("per_example", {}))
    return [
        m for m in names if statistic_for(m)[0] in row_a["per_example"] and statistic_for(m)[0] in row_b["per_example"]
    ]


def compare_rows(row_a: dict[str, Any], row_b: dict[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """One row of the two runs, paired on (user_id, example_id)."""
    pairs = pair_examples(row_a, row_b)
    metrics: dict[str, Any] = {}
    for metric in metric_names(row_a, row_b):
        source, stat = statistic_for(metric)
        va = [float(row_a["per_example"][source][i]) for i, _ in pairs]
        vb = [float(row_b["per_example"][source][j]) for _, j in pairs]
        test = paired_test(vb, va, statistic=stat, seed=seed)  # method = B, baseline = A: B - A
        metrics[metric] = {"a": stat(va), "b": stat(vb), **test.to_dict()}
    same = sum(row_a["rows"][i]["answer"] == row_b["rows"][j]["answer"] for i, j in pairs)
    sys_a, sys_b = row_a.get("system", {}), row_b.get("system", {})
    return {
        "task": row_a["task"],
        "name": row_a["name"],
        "n": len(pairs),
        "identical_answers": same,
        "identical_share": same / len(pairs),
        "metrics": metrics,
        "reported_metrics": {"a": row_a.get("metrics", {}), "b": row_b.get("metrics", {})},
        "tokens_per_s": {"a": sys_a.get("generated_tokens_per_s"), "b": sys_b.get("generated_tokens_per_s")},
        "generated_tokens": {"a": sys_a.get("generated_tokens"), "b": sys_b.get("generated_tokens")},
        "model": {"a": row_a["fingerprint"]["model"], "b": row_b["fingerprint"]["model"]},
    }


def compare_runs(a: dict[str, Any], b: dict[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """Every (task, name) row present in both runs; rows present in only one are listed, not compared."""
    rows_a, rows_b = rows_by_name(a, "A"), rows_by_name(b, "B")
    common = [k for k in rows_a if k in rows_b]
    return {
        "seed": seed,
        "rows": [compare_rows(rows_a[k], rows_b[k], seed=seed) for k in common],
        "only_in_a": [list(k) for k in rows_a if k not in rows_b],
        "only_in_b": [list(k) for k in rows_b if k not in rows_a],
    }


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(result: dict[str, Any], label_a: str, label_b: str) -> str:
    """One line per (row, metric); n, identical share and tokens/s on each row's first line."""
    head = [
        "task",
        "row",
        "n",
        "identical",
        "metric",
        label_a,
        label_b,
        f"{label_b} - {label_a} [95% CI]",
        "p",
        f"tok/s {label_a}",
        f"tok/s {label_b}",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        first = True
        for metric, m in row["metrics"].items():
            per_row = (
                [row["task"], row["name"], str(row["n"]), f"{row['identical_answers']}/{row['n']}"]
                if first
                else ["", "", "", ""]
            )
            tps = row["tokens_per_s"]
            speed = [_num(tps["a"], 2), _num(tps["b"], 2)] if first else ["", ""]
            diff = f"{m['difference']:+.4f} [{m['low']:+.4f}, {m['high']:+.4f}]"
            lines.append(
                "| "
                + " | ".join([*per_row, metric, _num(m["a"]), _num(m["b"]), diff, f"{m['p_value']:.3f}", *speed])
                + " |"
            )
            first = False
    notes = [f"Rows only in {label_a}: {r}" for r in result["only_in_a"]]
    notes += [f"Rows only in {label_b}: {r}" for r in result["only_in_b"]]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, default=RESULTS / "float32", help="run A (folder or results.json)")
    parser.add_argument("--b", type=Path, default=RESULTS / "bfloat16", help="run B (folder or results.json)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where compare.json and compare.md go")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)

    run_a, run_b = load_run(args.a), load_run(args.b)
    label_a = args.a.name if args.a.is_dir() else args.a.parent.name
    label_b = args.b.name if args.b.is_dir() else args.b.parent.name
    result = compare_runs(run_a, run_b, seed=args.seed)
    result["runs"] = {
        label: {"path": str(path), "when": run.get("when"), "machine": run.get("machine")}
        for label, path, run in ((label_a, args.a, run_a), (label_b, args.b, run_b))
    }
    result["labels"] = {"a": label_a, "b": label_b}
    table = markdown(result, label_a, label_b)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "compare.md").write_text(f"# {label_b} vs {label_a} (paired on user_id, example_id)\n\n{table}")
    print(table, end="")
    return result


if __name__ == "__main__":
    main()
