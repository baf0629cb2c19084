"""``make demo``: real users, real data, the local model, answers with and without personalization.

Steps: fetch MovieLens-100K into the cache (GroupLens, else the ``recbole`` wheel
on PyPI), load it into the default SQLite store; load the Amazon reviews from
``../shared/data`` when that folder exists; then, for a few real users, answer
one request twice (the identity baseline and a personalization method: RAG over
the user's earlier reviews, or their recent ratings plus attributes) and print
both side by side with the context used. Loads are skipped when the same file is
already loaded (by a loader that writes the same records as the current one).

Two things keep the walkthrough honest. Under each case is what the evaluation
measured for that method on that task (the gain table a suite writes,
``personalization_gains.json``), or "not measured": one generated answer shows
what a method does, not whether it helps. And the movie recommendation names only
real catalogue items the user has not rated, ranked by collaborative filtering
(BPR over the store's ratings, else popularity); the model only orders those
candidates, because a small model asked for "a movie" invents titles.

Then the main job: the service (``tailorlm serve``) on 127.0.0.1 with a fresh demo
admin key, printing the workbench URL (the key travels in the URL fragment, which
browsers never send to a server), the key and a curl example for a real user.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tailorlm.tasks import get_task

if TYPE_CHECKING:
    from tailorlm.data import Store
    from tailorlm.data.records import Item
    from tailorlm.eval.recsys import RecSetup
    from tailorlm.models import Generator
    from tailorlm.personalize import Personalizer, Query
    from tailorlm.settings import Settings

__all__ = [
    "demo_admin_key",
    "find_gains",
    "load_gains",
    "measured_gain",
    "recommendation_candidates",
    "run_demo",
    "shared_data_dir",
    "side_by_side",
    "with_candidates",
]

DEMO_KEY_LABEL = "demo admin (make demo)"
#: The gain table of the latest suite run, relative to the working directory (a checkout running ``make demo``).
GAINS_IN_CWD = Path("benchmarks") / "results" / "gains" / "personalization_gains.json"
N_CANDIDATES = 5  # recommendation candidates shown to the model: few enough for a 135M model to read


def side_by_side(console: Console, baseline: str, personalized: str, *, title: str | None = None) -> None:
    table = Table(show_lines=True, expand=True, title=title)
    table.add_column("non-personalized", ratio=1)
    table.add_column("personalized", ratio=1)
    table.add_row(baseline, personalized)
    console.print(table)


def shared_data_dir() -> Path:
    """``$TAILORLM_SHARED_DATA``, else ``../shared/data`` beside the working directory."""
    env = os.environ.get("TAILORLM_SHARED_DATA")
    return Path(env) if env else Path.cwd().parent / "shared" / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# When a loader changes the records it writes, a load recorded before the change is redone (same
# ids, so an upsert): otherwise a store filled by an older tailorlm keeps the old text for good.
_LOADER_CHANGED_AT = {"amazon": 1_796_049_760}  # review text and summary HTML-unescaped


def _load_once(store: Store, fmt: str, path: Path, console: Console) -> None:
    """Load ``path`` unless the store already holds this exact file, loaded by the current loader."""
    from rich.progress import Progress

    from tailorlm.data.loaders import load_dataset

    main_file = path if path.is_file() else max(path.iterdir(), key=lambda p: p.stat().st_size)
    digest = _sha256(main_file)
    since = _LOADER_CHANGED_AT.get(fmt, 0)
    if any(
        ld["source"] == fmt and ld["sha256"] == digest and (ld["started_at"] or 0) >= since for ld in store.list_loads()
    ):
        console.print(f"[dim]{path.name}: already loaded[/dim]")
        return
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"loading {path.name}", total=None)
        report = load_dataset(store, fmt, path, progress=lambda d, t: bar.update(task, completed=d, total=t or None))
    added = ", ".join(f"{k} +{v:,}" for k, v in report.added.items() if v)
    console.print(f"loaded {path.name} ({fmt}) in {report.seconds:.1f} s: {added}")


def _pick_amazon_user(store: Store) -> str | None:
    users = [u for u in store.list_users() if u.startswith("amazon:")]
    if not users:
        return None
    # The user with the most reviews (ties by id): the richest history to show.
    return max(users, key=lambda u: (store.user_counts(user_id=u)["documents"], u))


def _cases(store: Store) -> list[tuple[str, str, str, Query]]:
    """(user, method, caption, query) for the richest Amazon user and a few MovieLens users.

    The MovieLens queries are recommendations without candidates yet: :func:`with_candidates`
    adds them when the case is shown, so listing cases (the service's example user) trains nothing.
    """
    from tailorlm.personalize import Query

    cases = []
    if (amazon_user := _pick_amazon_user(store)) is not None:
        latest = store.get_documents(user_id=amazon_user)[-1]
        # The user's latest review is the query; only earlier reviews are eligible history.
        query = Query(
            latest.text[:600], task="amazon-title", timestamp=latest.timestamp, exclude_doc_ids=(latest.doc_id,)
        )
        cases.append((amazon_user, "rag-bm25", f"title for their latest review (they wrote {latest.title!r})", query))
    for uid in [u for u in store.list_users() if u.startswith("ml-100k:")][:2]:
        query = Query("Which of these movies would I enjoy most tonight?", task="recommendation")
        cases.append((uid, "recency+attributes", "a movie recommendation", query))
    return cases


# -- measured gains ------------------------------------------------------------------------

_METRIC_NAMES = {
    "rouge1": "ROUGE-1",
    "rougeL": "ROUGE-L",
    "mae": "MAE",
    "rmse": "RMSE",
    "macro_f1": "macro-F1",
    "bleu": "BLEU",
    "meteor": "METEOR",
    "ndcg@10": "NDCG@10",
    "mrr": "MRR",
}


def find_gains(explicit: Path | None = None) -> Path | None:
    """The gain table the demo quotes: ``explicit``; else the latest suite's table under the
    working directory (a checkout running ``make demo``); else the copy packaged with tailorlm
    (``eval/suites/gains.json``), so an installed demo still quotes numbers; else None.

    None is not an error: every case then says "not measured" rather than the demo failing.
    """
    if explicit is not None:
        return explicit
    if GAINS_IN_CWD.is_file():
        return GAINS_IN_CWD
    from tailorlm.eval.suite import SUITES_DIR

    packaged = SUITES_DIR / "gains.json"
    return packaged if packaged.is_file() else None


def load_gains(path: Path | None) -> dict[str, Any] | None:
    """The gain table at ``path``, or None when there is none or it is unreadable.

    A missing or broken table must not stop the demo, only turn its lines into "not measured".
    """
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("tasks"), dict) else None


def _is_row_of(row: str, method: str) -> bool:
    """Whether the row name (``"rag-bm25 / generate"``, ``"rag-bm25 [user] / choice"``) is ``method``'s.

    The name must start with the spec and the spec must end there, so ``rag-bm25`` does not
    claim the numbers of ``rag-bm25+profile``.
    """
    return row.startswith(method) and (len(row) == len(method) or row[len(method)] in " /[(")


def _num(x: float, *, signed: bool = False) -> str:
    """Three decimals with a true minus sign; ``signed`` also shows "+" (a delta's direction)."""
    sign = "\u2212" if x < 0 else ("+" if signed else "")
    return f"{sign}{abs(x):.3f}"


def _significance(stats: Mapping[str, Any], lower_is_better: bool) -> str:
    """``wins`` as the table decided it, or which side of 0 the whole CI lies on."""
    if stats.get("wins"):
        return "significant gain"
    lo, hi = stats["delta_ci"]
    return "significantly worse" if (lo > 0 if lower_is_better else hi < 0) else "not significant"


def measured_gain(gains: Mapping[str, Any] | None, task: str, method: str) -> str:
    """One line: the measured gain of ``method`` on ``task`` from the gain table, or "not measured".

    A match is the table's best LLM row or best row (in that order: the demo shows an LLM's
    answer) whose name is ``method``'s and that has a paired comparison with the baseline.
    Otherwise the task's verdict is quoted, so a reader still learns what did win there.
    """
    entry = ((gains or {}).get("tasks") or {}).get(task)
    if entry is None:
        return f"{task}: not measured" + ("" if gains else " (no gain table found)")
    base = entry.get("baseline")
    # best_llm carries its own comparison; best's comparison sits on the task entry itself.
    for side, stats in ((entry.get("best_llm"), entry.get("best_llm")), (entry.get("best"), entry)):
        if base and side and stats and _is_row_of(str(side.get("row", "")), method) and stats.get("delta") is not None:
            metric = _METRIC_NAMES.get(entry["metric"], entry["metric"])
            lower = bool(entry.get("lower_is_better"))
            lo, hi = stats["delta_ci"]
            p = "" if stats.get("p") is None else f", p={stats['p']:.2g}"
            return (
                f"measured on {task} (n={stats.get('n', 0)}): {side['row']} vs {base['row']}: "
                f"{metric}{' (lower is better)' if lower else ''} {_num(stats['delta'], signed=True)} "
                f"[{_num(lo)}, {_num(hi)}]{p} \u2014 {_significance(stats, lower)}"
            )
    return f"{task}: {entry.get('verdict', 'no verdict')}; this method: not measured"


# -- recommendation candidates ---------------------------------------------------------------


def _label(item: Item) -> str:
    """``Title (year)``: what the model reads and what its answer is matched against."""
    year = item.attributes.get("year")
    return f"{item.title} ({year})" if year and f"({year})" not in str(item.title) else str(item.title)


def _bpr_ranking(setup: RecSetup | None, user_id: str) -> list[str] | None:
    """Every item id by BPR score for ``user_id``, best first; None when BPR does not know the user."""
    if setup is None or user_id not in setup.users:
        return None
    import numpy as np

    scores = setup.bpr_scores(np.array([setup.users.index(user_id)]))[0]
    return [setup.items[i] for i in np.argsort(-scores, kind="stable")]


def _popularity_ranking(store: Store, user_id: str) -> list[str]:
    """Item ids by how many users of ``user_id``'s namespace interacted with them; ties by id."""
    prefix = user_id.split(":", 1)[0] + ":" if ":" in user_id else ""
    counts: Counter[str] = Counter()
    for uid in store.list_users():
        if uid.startswith(prefix):
            counts.update({it.item_id for it in store.get_interactions(user_id=uid)})
    return sorted(counts, key=lambda i: (-counts[i], i))


def recommendation_candidates(
    store: Store, user_id: str, *, n: int = N_CANDIDATES, setup: RecSetup | None = None
) -> tuple[list[Item], str]:
    """Up to ``n`` catalogue items ``user_id`` has not interacted with, best first, and the ranker's name.

    The ranker is BPR (the anchor ``benchmarks/results/recsys.json`` measures) when ``setup``
    knows the user, else most-popular. Only items the store holds with a title qualify (a stub
    item has nothing to show), and one label appears once (ML-100K lists some movies twice).
    """
    rated = {it.item_id for it in store.get_interactions(user_id=user_id)}
    ranked, source = _bpr_ranking(setup, user_id), "BPR"
    if ranked is None:
        ranked, source = _popularity_ranking(store, user_id), "most popular"
    picked: dict[str, Item] = {}
    for start in range(0, len(ranked), 100):
        chunk = [i for i in ranked[start : start + 100] if i not in rated]
        found = store.get_items(chunk) if chunk else {}
        for i in chunk:
            if (item := found.get(i)) is not None and item.title and _label(item) not in picked:
                picked[_label(item)] = item
        if len(picked) >= n:
            break
    return list(picked.values())[:n], source


def with_candidates(store: Store, user_id: str, query: Query, *, setup: RecSetup | None = None) -> tuple[Query, str]:
    """``query`` with the user's candidates as its choices (item ids in metadata), and a line naming them."""
    items, source = recommendation_candidates(store, user_id, setup=setup)
    labels = tuple(_label(it) for it in items)
    listed = "; ".join(f"[{i}] {label}" for i, label in enumerate(labels, 1)) or "none"
    line = f"candidates ({source}, catalogue items this user has not rated): {listed}"
    return replace(query, choices=labels, metadata={**query.metadata, "item_ids": [it.item_id for it in items]}), line


def demo_admin_key(store: Store) -> str:
    """A new admin key for this demo run; the previous demo's key is revoked.

    Keys are stored only as hashes, so a key printed by an earlier run cannot be shown
    again. Rotating only the demo's own key leaves any other admin key (first start,
    ``--rotate-admin-key``) working.
    """
    from tailorlm.serve import KeyStore

    keys = KeyStore(store)
    for info in keys.list_keys():
        if info.label == DEMO_KEY_LABEL and info.revoked_at is None:
            keys.revoke(info.key_id)
    return keys.create(role="admin", label=DEMO_KEY_LABEL)


def _print_service(console: Console, *, url: str, key: str, user_id: str | None) -> None:
    user = user_id or "<user id>"
    console.rule("tailorlm serve")
    console.print(f"workbench:  {url}/#key={key}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"admin key:  {key}   (stored only as a hash; a new one each demo run)", soft_wrap=True, markup=False)
    console.print(f"API docs:   {url}/docs", markup=False)
    body = (
        f'{{"model": "tailorlm/rag-bm25", "user": "{user}", '
        '"messages": [{"role": "user", "content": "Suggest a microphone for my home studio."}]}'
    )
    console.print(
        f"curl {url}/v1/chat/completions -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -d '{body}'",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    console.print("Ctrl-C stops the service.", markup=False)


def _gains_for_demo(explicit: Path | None, console: Console) -> dict[str, Any] | None:
    """The gain table, saying which file it is (or why there is none) before any case quotes it."""
    path = find_gains(explicit)
    gains = load_gains(path)
    if gains is not None:
        console.print(f"measured gains: {path}", markup=False, highlight=False)
    elif path is not None:
        console.print(f"measured gains: {path} is missing or unreadable; every case: not measured", markup=False)
    else:
        console.print("measured gains: no gain table found; every case: not measured", markup=False)
    return gains


def _bpr_setup(store: Store, namespace: str, console: Console) -> RecSetup | None:
    """BPR on the namespace's ratings, trained once per run (about 10 s for ML-100K on a CPU).

    None when it cannot be trained (no ratings, too few to split, Cornac missing): the
    candidates then come by popularity, still real and unrated, rather than the demo failing.
    """
    from tailorlm.eval.recsys import prepare_recommendation

    try:
        with console.status(f"training BPR on the {namespace} ratings for recommendation candidates"):
            return prepare_recommendation(store, namespace=namespace)
    except (ImportError, ValueError, RuntimeError, IndexError) as exc:
        console.print(f"BPR not trained ({exc}); candidates: most popular", markup=False)
        return None


def _ranked(answer: str, query: Query) -> str:
    """The candidates in the order a ranking answer gave, then that answer as written.

    The ranking comes first and holds only the real candidates (parsing can only reorder
    them); the raw text follows, marked as such, since a small model may still name a
    movie it made up there.
    """
    ranked = get_task(query.task).parse(answer, query.choices) or list(query.choices)
    listed = "\n".join(f"{i}. {c}" for i, c in enumerate(ranked, 1))
    return f"ranked:\n{listed}\n\nraw model output (only the candidates count):\n{answer}"


def _show_case(
    console: Console, store: Store, generator: Generator, identity: Personalizer, case: tuple[str, str, Query]
) -> None:
    """One case: the method's context, then the non-personalized and personalized answers side by side."""
    from tailorlm.models import GenerationConfig
    from tailorlm.models.inputs import generate_inputs
    from tailorlm.personalize import parse_method_spec

    user_id, method, query = case
    personalizer = parse_method_spec(method, collaborators={"generator": generator}).fit(store, [user_id])
    personal = personalizer.personalize(user_id, query)
    rec = personal.record
    console.print(f"method [bold]{method}[/bold], scope {rec.scope}, {rec.prompt_tokens} prompt tokens; context:")
    for block in personal.blocks:
        for item in block.items:
            label = f" -> {item.label}" if item.label and item.show_label else ""
            console.print(f"  - {item.text[:120]}{label}", markup=False)
    config = GenerationConfig(max_new_tokens=get_task(query.task).max_new_tokens if query.task != "chat" else 64)
    with console.status("generating"):
        answer, baseline = generate_inputs(generator, [personal, identity.personalize(user_id, query)], config=config)
    if query.choices:
        answer, baseline = _ranked(answer, query), _ranked(baseline, query)
    side_by_side(console, baseline, answer)


def run_demo(
    settings: Settings,
    *,
    console: Console,
    n_users: int = 3,
    serve: bool = True,
    port: int | None = None,
    gains: Path | None = None,
) -> None:
    """The walkthrough: load, show each case with its measured gain, then (``serve``) run the service.

    ``gains`` is the gain table to quote (default: :func:`find_gains`).
    """
    from tailorlm.data import Store
    from tailorlm.data.fetch import fetch_movielens_100k
    from tailorlm.models import build_generator
    from tailorlm.personalize import parse_method_spec

    store = Store.from_settings(settings)
    console.rule("tailorlm demo")
    console.print(f"store: {store.url}")
    ml = fetch_movielens_100k(settings.cache_dir)
    _load_once(store, "movielens", ml, console)
    amazon = shared_data_dir() / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz"
    if amazon.is_file():
        _load_once(store, "amazon", amazon, console)
    else:
        console.print(f"[dim]{amazon} not found: showing MovieLens users only[/dim]")
    table = _gains_for_demo(gains, console)

    with console.status("loading the model"):
        generator = build_generator(settings)
    identity = parse_method_spec("identity").fit(store, [])
    setups: dict[str, RecSetup | None] = {}  # namespace -> BPR, trained on first use
    for user_id, method, caption, query in _cases(store)[:n_users]:
        candidates = None
        if query.task == "recommendation":
            namespace = user_id.split(":", 1)[0]
            if namespace not in setups:
                setups[namespace] = _bpr_setup(store, namespace, console)
            query, candidates = with_candidates(store, user_id, query, setup=setups[namespace])
        console.rule(Text(f"user {user_id}: {caption}"))  # ids and review titles are data: no markup, no emoji
        if candidates is not None:
            console.print(candidates, markup=False, highlight=False)
            if not query.choices:
                continue
        _show_case(console, store, generator, identity, (user_id, method, query))
        console.print(measured_gain(table, query.task, method), markup=False, highlight=False)
    if not serve:
        console.print('Next: `tailorlm serve`, `tailorlm generate --user USER --compare "..."`, `tailorlm run --help`.')
        return

    from tailorlm.serve import create_app
    from tailorlm.serve.server import serve_forever

    host, port = settings.serve.host, settings.serve.port if port is None else port
    # The model already in memory serves the API too: no second load.
    application = create_app(settings, store=store, generator=generator)
    cases = _cases(store)
    _print_service(
        console, url=f"http://{host}:{port}", key=demo_admin_key(store), user_id=cases[0][0] if cases else None
    )
    serve_forever(application, host=host, port=port)
