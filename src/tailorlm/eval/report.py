"""Suite results as a Markdown table, plots (matplotlib) and one self-contained HTML report.

The plots answer the two questions a reader has: how do the methods compare (each
task's primary metric per row, with its 95% CI), and is a gain broad or driven by a
few users (the histogram of per-query gain over the task's baseline).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from tailorlm.eval.compare import primary_metrics
from tailorlm.eval.gains import markdown_gains, personalization_gains
from tailorlm.eval.metrics import METRIC_DIRECTION
from tailorlm.tasks import get_task

__all__ = ["markdown_table", "plot_gains", "plot_scores", "write_html", "write_reports"]


def _fmt_ci(ci: dict[str, float] | None) -> str:
    if not ci:
        return ""
    return f"{ci['estimate']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def _fmt_test(res: dict[str, Any], metric: str) -> str:
    test = res.get("paired", {}).get("tests", {}).get(metric)
    if not test:
        return ""
    return f"{test['difference']:+.3f} (p={test['p_value']:.3f}, n={test['n']})"


def _done(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["results"] if not r.get("skipped")]


def _run_cell(r: dict[str, Any]) -> str:
    """``reused`` or ``computed``; blank for results written before rows said which."""
    if "reused" not in r:
        return ""
    return "reused" if r["reused"] else "computed"


def _reuse_legend(report: dict[str, Any]) -> str:
    """Says how many rows are copies of an earlier run, so a reader never mistakes them for a reproduction."""
    done = _done(report)
    if not any("reused" in r for r in done):
        return ""
    reused = sum(bool(r.get("reused")) for r in done)
    if report.get("reuse", {}).get("fresh"):
        return f"Fresh run (--fresh): all {len(done)} rows computed in this run, none reused."
    return (
        f"Column run: **reused** rows ({reused} of {len(done)}) were taken from an earlier run whose fingerprint "
        "(row settings, data file hashes, model, package version) matches; **computed** rows ran now."
    )


def markdown_table(report: dict[str, Any]) -> str:
    """One table per task: every row's metrics with 95% CIs, the paired difference to the baseline and costs."""
    out = [f"Suite `{report['suite']}`, run {report['when']} on {report['machine']['cpus']} CPUs."]
    if legend := _reuse_legend(report):
        out += ["", legend]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in report["results"]:
        by_task.setdefault(r["task"], []).append(r)
    for task, rows in by_task.items():
        metrics = primary_metrics(get_task(task).kind)
        first = metrics[0] if metrics else None
        out += ["", f"### {task}", ""]
        header = ["method / predictor", "run", "n", *[f"{m} (95% CI)" for m in metrics]]
        header += [f"Δ{first} vs baseline (p)" if first else "", "unparsable", "prompt tokens", "p50 / p99 ms"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for r in rows:
            if r.get("skipped"):
                out.append(f"| {r['name']} | skipped: {r['skipped']} |" + " |" * (len(header) - 2))
                continue
            m, sysm = r["metrics"], r.get("system", {})
            cells = [r["name"] + (" **(baseline)**" if r.get("baseline") else ""), _run_cell(r), str(m.get("n", ""))]
            cells += [_fmt_ci(r.get("ci", {}).get(x)) or (f"{m[x]:.3f}" if x in m else "") for x in metrics]
            cells.append(_fmt_test(r, first) if first else "")
            cells.append(f"{m['unparsable']:.2f}" if "unparsable" in m else "")
            cells.append(f"{m.get('prompt_tokens', 0):.0f}")
            cells.append(f"{sysm.get('personalize_ms_p50', 0):.1f} / {sysm.get('personalize_ms_p99', 0):.1f}")
            out.append("| " + " | ".join(cells) + " |")
        out += _category_table(task, rows)
    out += _system_tables(report)
    return "\n".join(out) + "\n"


def _category_table(task: str, rows: list[dict[str, Any]]) -> list[str]:
    """Per question category (memory QA), every row's metrics with 95% CIs; [] when rows have none.

    A cell's ``n`` is how many of the category's questions the value rests on (evidence
    recall leaves out questions without evidence)."""
    done = [r for r in rows if not r.get("skipped") and r.get("ci_by_category")]
    if not done:
        return []
    metrics = primary_metrics(get_task(task).kind)
    header = ["method / predictor", "category", "questions", *[f"{m} (95% CI, n)" for m in metrics]]
    out = ["", f"#### {task} by question category", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in done:
        for cat, cell in r["ci_by_category"].items():
            cis = cell["ci"]
            values = [f"{_fmt_ci(cis[m])}, {cis[m]['n']}" if m in cis else "" for m in metrics]
            out.append("| " + " | ".join([r["name"], cat, str(cell["n"]), *values]) + " |")
    return out


def _system_tables(report: dict[str, Any]) -> list[str]:
    """Load throughput per dataset, then per-row costs: personalization latency, prompt size, model time, memory."""
    out = ["", "### System: dataset loads", "", "| dataset | records | seconds | records/s |", "|---|---:|---:|---:|"]
    for d in report.get("datasets", []):
        if d.get("loaded"):
            out.append(f"| {d['format']} | {d['records']:,} | {d['seconds']:.2f} | {d['records_per_s']:,.0f} |")
        else:
            out.append(f"| {d['format']} | not loaded: {d.get('reason', '')} | | |")
    out += [
        "",
        "### System: cost per row",
        "",
        "| task | method / predictor | personalize p50 / p99 ms | prompt tokens | model seconds | "
        "generated tokens/s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in _done(report):
        sm, m = r.get("system", {}), r["metrics"]
        tps = f"{sm['generated_tokens_per_s']:.1f}" if "generated_tokens_per_s" in sm else ""
        lat = f"{sm.get('personalize_ms_p50', 0):.1f} / {sm.get('personalize_ms_p99', 0):.1f}"
        out.append(
            f"| {r['task']} | {r['name']} | {lat} | {m.get('prompt_tokens', 0):.0f} |"
            f" {sm.get('predict_seconds', 0):.1f} | {tps} | {sm.get('peak_rss_mb', 0):,.0f} |"
        )
    return out + _training_table(report)


def _training_table(report: dict[str, Any]) -> list[str]:
    """The suite's trained adapters: what each cost and whether its loss moved."""
    rows = report.get("training") or []
    if not rows:
        return []
    out = [
        "",
        "### System: training (adapters the parametric rows use)",
        "",
        "| method | scope | owner | task | status | steps | seconds | examples | tokens | MB | loss first → last |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for t in rows:
        size = f"{t['size_bytes'] / 1e6:.2f}" if t.get("size_bytes") else ""
        loss = f"{t['loss_first']:.3f} → {t['loss_last']:.3f}" if t.get("loss_first") is not None else ""
        secs = f"{t['seconds']:.0f}" if t.get("seconds") is not None else ""
        status = t["status"] if t["status"] != "failed" else f"failed: {(t.get('error') or '')[:80]}"
        out.append(
            f"| {t['method']} | {t['scope']} | {t['owner'] or '-'} | {t['task']} | {status} | {t.get('steps') or ''} |"
            f" {secs} | {t.get('examples') or ''} | {t.get('tokens') or ''} | {size} | {loss} |"
        )
    return out


def plot_scores(report: dict[str, Any], path: Path) -> Path | None:
    """One panel per task: the primary metric of each row with its 95% CI (baseline highlighted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in dict.fromkeys(r["task"] for r in _done(report)) if primary_metrics(get_task(t).kind)]
    if not tasks:
        return None
    heights = [max(1.6, 0.38 * sum(r["task"] == t for r in _done(report)) + 0.9) for t in tasks]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(9, sum(heights)), gridspec_kw={"height_ratios": heights})
    axes = [axes] if len(tasks) == 1 else list(axes)
    for ax, task in zip(axes, tasks, strict=True):
        metric = primary_metrics(get_task(task).kind)[0]
        rows = [r for r in _done(report) if r["task"] == task and metric in r.get("ci", {})]
        names = [r["name"] for r in rows]
        est = [r["ci"][metric]["estimate"] for r in rows]
        lo = [r["ci"][metric]["estimate"] - r["ci"][metric]["low"] for r in rows]
        hi = [r["ci"][metric]["high"] - r["ci"][metric]["estimate"] for r in rows]
        colors = ["#d95f02" if r.get("baseline") else "#1b9e77" for r in rows]
        y = list(range(len(rows)))[::-1]
        ax.errorbar(est, y, xerr=[lo, hi], fmt="none", ecolor="#555", capsize=3, lw=1)
        ax.scatter(est, y, c=colors, zorder=3)
        ax.set_yticks(y, names, fontsize=8)
        better = "lower is better" if METRIC_DIRECTION.get(metric, 1) < 0 else "higher is better"
        ax.set_title(f"{task}: {metric} with 95% CI ({better}; orange = baseline)", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_gains(report: dict[str, Any], path: Path) -> Path | None:
    """Histograms of per-query gain over the task baseline (positive = better), one small panel per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _done(report) if r.get("paired", {}).get("gain_per_query")]
    if not rows:
        return None
    cols = 3
    n_rows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(11, 2.3 * n_rows), squeeze=False)
    for ax, r in zip(axes.flat, rows, strict=False):
        metric = primary_metrics(get_task(r["task"]).kind)[0]
        gains = r["paired"]["gain_per_query"].get(metric, [])
        ax.hist(gains, bins=21, color="#7570b3")
        ax.axvline(0, color="#333", lw=0.8)
        better = sum(g > 0 for g in gains)
        worse = sum(g < 0 for g in gains)
        ax.set_title(f"{r['task']}\n{r['name']}: {better} better, {worse} worse", fontsize=7.5)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(f"gain in {metric} vs baseline", fontsize=7)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _img(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _md_to_html_table(md: str) -> str:
    """Render the Markdown tables (only pipes and headings occur) without a Markdown dependency."""
    out, in_table = [], False
    for line in md.splitlines():
        if line.startswith("#### "):
            out.append(f"<h4>{html.escape(line[5:])}</h4>")
        elif line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("|") and set(line) <= set("|-: "):
            continue
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{html.escape(c).replace('**', '')}</{tag}>" for c in cells) + "</tr>")
            continue
        elif line.strip():
            out.append("<p>" + re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line)) + "</p>")
        if in_table and not line.startswith("|"):
            out.insert(len(out) - 1, "</table>")
            in_table = False
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def write_html(report: dict[str, Any], md: str, plots: list[Path | None], path: Path) -> Path:
    """One file with everything embedded (tables, plots, config, datasets, judge), viewable offline."""
    judge = report.get("judge")
    judge_html = ""
    if judge:
        judge_html = "<h2>LLM-as-judge</h2><pre>" + html.escape(json.dumps(judge, indent=1)) + "</pre>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tailorlm suite {html.escape(report["suite"])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; font-size: 12.5px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
th {{ background: #f2f2f2; }} img {{ max-width: 100%; }} pre {{ background: #f7f7f7; padding: 1em; overflow: auto; }}
</style></head><body>
<h1>tailorlm evaluation: suite <code>{html.escape(report["suite"])}</code></h1>
<p>{html.escape(report.get("description", ""))}</p>
<p>Run {html.escape(report["when"])}; machine: {html.escape(json.dumps(report["machine"]))}.
Each cell: estimate [95% bootstrap CI]. Δ: paired bootstrap difference to the task's baseline on common queries.</p>
<h2>Results</h2>
{_md_to_html_table(md)}
<h2>Plots</h2>
{"".join(_img(p) for p in plots)}
{judge_html}
<h2>Datasets</h2><pre>{html.escape(json.dumps(report.get("datasets", []), indent=1))}</pre>
<h2>Configuration</h2><pre>{html.escape(json.dumps(report["config"], indent=1))}</pre>
</body></html>
"""
    path.write_text(page)
    return path


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """results.md, scores.png, gains.png, personalization_gains.json and report.html beside results.json.

    The personalization gain table goes into its own JSON (for scripts) and at the end of
    results.md, so the HTML page, rendered from the same Markdown, carries it too.
    """
    table = personalization_gains(report)
    gains_path = out_dir / "personalization_gains.json"
    gains_path.write_text(json.dumps(table, indent=2))
    md = markdown_table(report) + "\n" + markdown_gains(table)
    (out_dir / "results.md").write_text(md)
    scores = plot_scores(report, out_dir / "scores.png")
    gains = plot_gains(report, out_dir / "gains.png")
    page = write_html(report, md, [scores, gains], out_dir / "report.html")
    files = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "html": page, "gains": gains_path}
    if scores:
        files["scores_plot"] = scores
    if gains:
        files["gains_plot"] = gains
    return files
