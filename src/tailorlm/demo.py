"""``make demo``: real users, real data, the local model, answers with and without personalization.

Steps: fetch MovieLens-100K into the cache (GroupLens, else the ``recbole`` wheel
on PyPI), load it into the default SQLite store; load the Amazon reviews from
``../shared/data`` when that folder exists; then, for a few real users, answer
one request twice (non-personalized and with the user's retrieved history) and
print both side by side. Loads are skipped when the same file is already loaded.

Until the service lands this is the main job; then it starts ``tailorlm serve``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from tailorlm.data import Store
    from tailorlm.settings import Settings

__all__ = ["run_demo", "shared_data_dir", "side_by_side"]


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


def _load_once(store: Store, fmt: str, path: Path, console: Console) -> None:
    from rich.progress import Progress

    from tailorlm.data.loaders import load_dataset

    main_file = path if path.is_file() else max(path.iterdir(), key=lambda p: p.stat().st_size)
    digest = _sha256(main_file)
    if any(ld["source"] == fmt and ld["sha256"] == digest for ld in store.list_loads()):
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


def run_demo(settings: Settings, *, console: Console, n_users: int = 2) -> None:
    from tailorlm.data import Store
    from tailorlm.data.fetch import fetch_movielens_100k
    from tailorlm.history_prompt import baseline_messages, history_messages, user_history_lines
    from tailorlm.models import GenerationConfig, build_generator

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

    cases: list[tuple[str, str, list[str]]] = []
    if (amazon_user := _pick_amazon_user(store)) is not None:
        latest = store.get_documents(user_id=amazon_user)[-1]
        request = f"Write a short title (a few words) for this product review:\n\n{latest.text[:600]}"
        lines = user_history_lines(
            store, user_id=amazon_user, request=latest.text, k=4, before=latest.timestamp, exclude_ids=[latest.doc_id]
        )
        cases.append((f"{amazon_user} (their own title: {latest.title!r})", request, lines))
    for uid in [u for u in store.list_users() if u.startswith("ml-100k:")][: max(0, n_users - len(cases))]:
        request = "Recommend one movie I would enjoy tonight, and say why in two sentences."
        lines = user_history_lines(store, user_id=uid, request=request, k=5)
        cases.append((uid, request, lines))

    with console.status("loading the model"):
        generator = build_generator(settings)
    config = GenerationConfig(max_new_tokens=64)
    for who, request, lines in cases:
        console.rule(f"user {who}")
        console.print(f"[bold]request:[/bold] {request.splitlines()[0]}")
        console.print("[bold]history used:[/bold]\n" + "\n".join(f"  - {ln[:140]}" for ln in lines))
        with console.status("generating"):
            personalized, baseline = generator.generate(
                [history_messages(request, lines), baseline_messages(request)], config=config
            )
        side_by_side(console, baseline, personalized)
    console.print('Next: `tailorlm generate --user USER --compare "..."`, `tailorlm data stats`.')
