"""``make demo``: real users, real data, the local model, answers with and without personalization.

Steps: fetch MovieLens-100K into the cache (GroupLens, else the ``recbole`` wheel
on PyPI), load it into the default SQLite store; load the Amazon reviews from
``../shared/data`` when that folder exists; then, for a few real users, answer
one request twice (the identity baseline and a personalization method: RAG over
the user's earlier reviews, or their recent ratings plus attributes) and print
both side by side with the context used. Loads are skipped when the same file is
already loaded.

Then the main job: the service (``tailorlm serve``) on 127.0.0.1 with a fresh demo
admin key, printing the workbench URL (the key travels in the URL fragment, which
browsers never send to a server), the key and a curl example for a real user.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tailorlm.tasks import get_task

if TYPE_CHECKING:
    from tailorlm.data import Store
    from tailorlm.personalize import Query
    from tailorlm.settings import Settings

__all__ = ["demo_admin_key", "run_demo", "shared_data_dir", "side_by_side"]

DEMO_KEY_LABEL = "demo admin (make demo)"


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


def _cases(store: Store) -> list[tuple[str, str, str, Query]]:
    """(user, method, caption, query) for the richest Amazon user and a few MovieLens users."""
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
        query = Query("Recommend one movie I would enjoy tonight, and say why in two sentences.", task="chat")
        cases.append((uid, "recency+attributes", "a movie recommendation", query))
    return cases


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


def run_demo(
    settings: Settings, *, console: Console, n_users: int = 3, serve: bool = True, port: int | None = None
) -> None:
    from tailorlm.data import Store
    from tailorlm.data.fetch import fetch_movielens_100k
    from tailorlm.models import GenerationConfig, build_generator
    from tailorlm.models.inputs import generate_inputs
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

    with console.status("loading the model"):
        generator = build_generator(settings)
    identity = parse_method_spec("identity").fit(store, [])
    for user_id, method, caption, query in _cases(store)[:n_users]:
        personalizer = parse_method_spec(method, collaborators={"generator": generator}).fit(store, [user_id])
        personal = personalizer.personalize(user_id, query)
        console.rule(f"user {user_id}: {caption}")
        rec = personal.record
        console.print(f"method [bold]{method}[/bold], scope {rec.scope}, {rec.prompt_tokens} prompt tokens; context:")
        for block in personal.blocks:
            for item in block.items:
                label = f" -> {item.label}" if item.label and item.show_label else ""
                console.print(f"  - {item.text[:120]}{label}", markup=False)
        config = GenerationConfig(max_new_tokens=get_task(query.task).max_new_tokens if query.task != "chat" else 64)
        with console.status("generating"):
            answer, baseline = generate_inputs(
                generator, [personal, identity.personalize(user_id, query)], config=config
            )
        side_by_side(console, baseline, answer)
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
