"""Browser acceptance test of the web workbench (issue 5, item 4).

A real chromium (Debian's, at /usr/bin/chromium; ``playwright install`` cannot download a
browser here) driven by Playwright clicks through the page served by the real app on
127.0.0.1: enter the key, choose a user, compare answers, prefer the personalized one; the
preference must then be in the store. It also checks the key-in-fragment path, that user
data is shown as text (never as HTML) and that deleting a user asks first.

Skipped with the reason when chromium or playwright is missing, except in CI (``CI=true``),
where that fails. The screenshot goes to ``$TAILORLM_SCREENSHOT_DIR`` (else ``tmp_path``);
``TAILORLM_SAVE_SCREENSHOT=1`` also copies it to ``benchmarks/results/workbench.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailorlm import Document, Store, User
from tailorlm.models.base import GenerationConfig
from tailorlm.testing import FakeGenerator

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = "tlm_00000000000000aa_workbench-browser-test-secret-0123456789"  # the API key format
USER = "amazon:guitarist-7"
XSS = "<img src=x onerror=\"document.title='pwned'\"><b>not bold</b>"
TIMEOUT_MS = 20_000


class ContextNotingFake(FakeGenerator):
    """FakeGenerator that also says how many lines of user context its system prompt quoted.

    FakeGenerator echoes the user message, which the personalized and the baseline prompt
    share, so both answers would be identical and no preference could be stored between them
    (a Preference with chosen == rejected is invalid).
    """

    def _words(self, conv: list[dict[str, str]], config: GenerationConfig, adapter: str | None) -> list[str]:
        # the words both generate() and the scheduler's decode batch answer with
        words = super()._words(conv, config, adapter)
        return (_context_note(conv).split() + words)[: config.max_new_tokens]


def _context_note(conv: list[dict[str, str]]) -> str:
    system = "\n".join(m["content"] for m in conv if m["role"] == "system")
    lines = len(re.findall(r"^\d+\. ", system, flags=re.MULTILINE))
    return f"(drawing on {lines} things you wrote) " if lines else ""


def _browser_or_skip() -> Any:
    """playwright's sync API, or skip (fail in CI) with what is missing and how to get it."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)"
    try:
        from playwright import sync_api
    except ImportError:
        missing = missing or "the playwright package is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run in CI: {missing}")
        pytest.skip(missing)
    return sync_api


# (title, rating, timestamp, text) of the chosen user's reviews
REVIEWS = [
    ("Warm and quiet", 5, 1_400_000_000, "These nylon strings sound warm and stay in tune; great for quiet practice."),
    ("Too bright", 2, 1_410_000_000, "Steel strings were far too bright for my classical guitar, and they buzzed."),
    ("Solid pop filter", 4, 1_420_000_000, "A pop filter that clamps well to my home studio microphone stand."),
]


def _fill_store(store: Store) -> None:
    guitarist = User(
        user_id=USER, age=34, occupation="session musician", location="Lyon", attributes={"plays": "guitar"}
    )
    reviews = [
        Document(user_id=USER, doc_kind="review", title=title, rating=rating, timestamp=ts, text=text)
        for title, rating, ts, text in REVIEWS
    ]
    store.add(
        [
            guitarist,
            *reviews,
            Document(user_id=USER, doc_kind="post", timestamp=1_430_000_000, text=XSS),
            User(user_id="movielens:42", age=25, occupation="student"),
            Document(user_id="movielens:42", doc_kind="review", text="Loved the soundtrack of this film."),
        ]
    )


@pytest.fixture(scope="module")
def sync_api() -> Any:
    api = _browser_or_skip()
    api.expect.set_options(timeout=TIMEOUT_MS)
    return api


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'workbench.db'}", files_dir=tmp_path / "files") as store:
        _fill_store(store)
        yield store


@pytest.fixture
def base_url(store: Store, tmp_path: Path) -> Iterator[str]:
    """The real app on 127.0.0.1; memory extraction is off, as this test is about the page."""
    from tailorlm.serve import create_app, run_in_thread
    from tailorlm.settings import load_settings

    settings = load_settings(cache_dir=tmp_path / "cache", serve={"memory": False})
    app = create_app(settings, store=store, generator=ContextNotingFake(), admin_key=ADMIN_KEY)
    with run_in_thread(app) as url:
        yield url


@pytest.fixture
def page(sync_api: Any) -> Iterator[Any]:
    """A fresh chromium page; fails the test on any JavaScript error or console error."""
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
            page.expected_console_errors = []  # substrings of console errors a test causes on purpose
            yield page
        finally:
            browser.close()
    allowed = getattr(page, "expected_console_errors", [])
    errors = [e for e in errors if not (e.startswith("console: ") and any(a in e for a in allowed))]
    assert not errors, errors


def _save_screenshot(page: Any, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TAILORLM_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "workbench.png"
    page.evaluate("window.scrollTo(0, 0)")  # the user list is sticky: show it at the top
    page.screenshot(path=str(path), full_page=True)
    print(f"workbench screenshot: {path}")
    if os.environ.get("TAILORLM_SAVE_SCREENSHOT") == "1":
        copy = REPO / "benchmarks" / "results" / "workbench.png"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        print(f"workbench screenshot copied to: {copy}")
    return path


def test_compare_and_prefer_stores_the_preference(
    sync_api: Any, page: Any, base_url: str, store: Store, tmp_path: Path
) -> None:
    expect = sync_api.expect
    page.goto(f"{base_url}/")
    page.get_by_label("API key", exact=True).fill(ADMIN_KEY)
    page.get_by_role("button", name="Use this key").click()

    page.get_by_label("Filter users", exact=True).fill("guitar")
    expect(page.locator("#user-list button")).to_have_count(1)
    page.get_by_role("button", name=USER, exact=True).click()
    expect(page.locator("#attributes")).to_contain_text("session musician")
    expect(page.locator("#documents")).to_contain_text("Warm and quiet")
    # Untrusted text is shown literally: no element is made from it and its handler never ran.
    expect(page.locator("#documents")).to_contain_text("<b>not bold</b>")
    assert page.locator("#documents img, #documents b").count() == 0
    assert page.title() != "pwned"

    page.get_by_label("Method", exact=True).select_option("rag-bm25")
    page.get_by_label("Message", exact=True).fill("Which strings should I buy for quiet practice?")
    page.get_by_role("button", name="Compare answers").click()
    expect(page.locator("#pers-text")).to_contain_text("quiet practice")
    expect(page.locator("#base-text")).to_contain_text("quiet practice")
    expect(page.locator("#retrieved tbody tr").first).to_be_visible()
    personalized = page.locator("#pers-text").text_content()
    baseline = page.locator("#base-text").text_content()
    assert personalized and baseline and personalized != baseline

    page.get_by_role("button", name="This one is better: personalized answer").click()
    expect(page.locator("#pref-state")).to_contain_text("Saved")
    expect(page.locator("#preferences")).to_contain_text("workbench")
    _save_screenshot(page, tmp_path)

    prefs = store.get_preferences(user_id=USER)
    assert [(p.chosen, p.rejected, p.source) for p in prefs] == [(personalized, baseline, "workbench")]
    assert prefs[0].prompt == "Which strings should I buy for quiet practice?"
    assert store.get_preferences(user_id="movielens:42") == []


def test_key_from_fragment_and_delete_user(sync_api: Any, page: Any, base_url: str, store: Store) -> None:
    expect = sync_api.expect
    page.goto(f"{base_url}/#key={ADMIN_KEY}")
    page.get_by_role("button", name="movielens:42", exact=True).click()
    expect(page.locator("#attributes")).to_contain_text("student")
    assert "#" not in page.url, "the key must be removed from the address bar"

    prompts: list[str] = []

    def accept(dialog: Any) -> None:
        prompts.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Delete this user's data").click()
    expect(page.locator("#status")).to_contain_text("Deleted")
    assert prompts and "movielens:42" in prompts[0]
    assert not store.has_user(user_id="movielens:42")
    assert store.has_user(user_id=USER)
    expect(page.get_by_role("button", name="movielens:42", exact=True)).to_have_count(0)


def test_page_and_assets_are_public_and_nothing_else_is_served(base_url: str) -> None:
    """The page needs no key (it holds no data until the API accepts one); only its own files are served."""
    import httpx

    with httpx.Client(base_url=base_url) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for name in ("app.js", "render.js", "sse.js", "style.css"):
            assert client.get(f"/static/{name}").status_code == 200, name
        for path in ("/static/index.html.bak", "/static/..%2Fworkbench.py", "/static/../workbench.py"):
            assert client.get(path).status_code == 404, path
        assert client.get("/v1/users").status_code == 401


def test_a_failed_user_load_clears_the_panels_and_disables_the_actions(
    sync_api: Any, page: Any, base_url: str, store: Store
) -> None:
    expect = sync_api.expect
    page.expected_console_errors = ["404"]  # the browser logs the failed fetch itself
    page.goto(f"{base_url}/#key={ADMIN_KEY}")
    page.get_by_role("button", name=USER, exact=True).click()
    expect(page.locator("#documents")).to_contain_text("Warm and quiet")
    expect(page.locator("#delete-user")).to_be_enabled()
    store.delete_user(user_id="movielens:42")  # gone after the list was shown: its load will fail
    page.get_by_role("button", name="movielens:42", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Could not load movielens:42")
    expect(page.locator("#user-title")).to_have_text("movielens:42 (could not be loaded)")
    expect(page.locator("#documents li")).to_have_count(0)  # not the guitarist's reviews under another name
    expect(page.locator("#attributes")).to_have_text("")
    expect(page.locator("#delete-user")).to_be_disabled()
    expect(page.locator("#send")).to_be_disabled()


def test_a_timestamp_beyond_the_javascript_date_range_does_not_break_the_page(
    sync_api: Any, page: Any, base_url: str, store: Store
) -> None:
    expect = sync_api.expect
    far = 2**62  # a valid 64-bit timestamp; as milliseconds it is far past what a Date holds
    store.add([Document(user_id=USER, doc_kind="review", timestamp=far, text="A review from the far future.")])
    page.goto(f"{base_url}/#key={ADMIN_KEY}")
    page.get_by_role("button", name=USER, exact=True).click()
    expect(page.locator("#documents")).to_contain_text("A review from the far future.")
    expect(page.locator("#documents")).to_contain_text(f"t={str(far)[:14]}")  # as a JavaScript number prints it
    expect(page.locator("#delete-user")).to_be_enabled()  # the page works (the fixture also checks for errors)


@pytest.fixture
def slow_app(store: Store, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The app over a fake whose every decode step stands for 50 ms of model time."""
    from tailorlm.serve import create_app, run_in_thread
    from tailorlm.settings import load_settings

    settings = load_settings(cache_dir=tmp_path / "cache", serve={"memory": False})
    app = create_app(settings, store=store, generator=ContextNotingFake(step_seconds=0.05), admin_key=ADMIN_KEY)
    with run_in_thread(app) as url:
        yield url, app


def test_a_long_compare_shows_elapsed_time_and_can_be_cancelled(sync_api: Any, page: Any, slow_app: tuple) -> None:
    import re
    import time

    expect = sync_api.expect
    url, app = slow_app
    page.goto(f"{url}/#key={ADMIN_KEY}")
    page.get_by_role("button", name=USER, exact=True).click()
    expect(page.locator("#documents")).to_contain_text("Warm and quiet")
    page.get_by_label("Method", exact=True).select_option("rag-bm25")  # no model call before the two answers
    page.get_by_label("Max tokens", exact=True).fill("400")
    page.get_by_label("Message", exact=True).fill(" ".join(f"word{i}" for i in range(300)))
    page.get_by_role("button", name="Compare answers").click()
    expect(page.locator("#status")).to_have_text(re.compile(r"Generating both answers… [1-9]\d* s"))  # it counts
    scheduler = app.state.service.scheduler
    assert scheduler.stats().running == 2  # both answers are being decoded
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Compare answers")).to_be_enabled()
    deadline = time.monotonic() + 10
    while scheduler.stats().running and time.monotonic() < deadline:  # the server notices the closed request
        time.sleep(0.01)
    assert scheduler.stats().running == 0
    assert len(scheduler._batch.sizes) < 300  # cancelled long before the 300-word answers were done


def _start_long_compare(page: Any, url: str, words: int = 300) -> str:
    """Choose the guitarist and ask for a compare whose answers take ``words`` decode steps;
    the message, which the fake's answers end with."""
    page.goto(f"{url}/#key={ADMIN_KEY}")
    page.get_by_role("button", name=USER, exact=True).click()
    page.get_by_label("Method", exact=True).select_option("rag-bm25")  # no model call before the two answers
    page.get_by_label("Max tokens", exact=True).fill(str(words + 100))
    message = " ".join(f"word{i}" for i in range(words))
    page.get_by_label("Message", exact=True).fill(message)
    page.get_by_role("button", name="Compare answers").click()
    return message


def test_compare_streams_both_answers_as_they_are_decoded_and_cancel_stops_them(
    sync_api: Any, page: Any, slow_app: tuple
) -> None:
    import time

    expect = sync_api.expect
    url, app = slow_app
    scheduler = app.state.service.scheduler
    message = _start_long_compare(page, url)  # 300 words at 50 ms a step: about 15 s
    # Both answers show text long before they are done: they grow while the status still counts.
    expect(page.locator("#pers-text")).to_contain_text("echo: word0 word1")
    expect(page.locator("#base-text")).to_contain_text("echo: word0 word1")
    shown = len(page.locator("#pers-text").text_content() or "")
    page.wait_for_function("n => document.getElementById('pers-text').textContent.length > n", arg=shown)
    page.wait_for_function("n => document.getElementById('base-text').textContent.length > n", arg=shown)
    expect(page.locator("#status")).to_contain_text("Generating both answers")
    assert scheduler.stats().running == 2  # still decoding: what the page shows is partial
    assert "word299" not in (page.locator("#pers-text").text_content() or "")

    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Compare answers")).to_be_enabled()
    expect(page.locator("#pers-meta")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="This one is better: personalized answer")).to_be_disabled()
    deadline = time.monotonic() + 10
    while scheduler.stats().running and time.monotonic() < deadline:  # the server notices the closed request
        time.sleep(0.01)
    assert scheduler.stats().running == 0
    stopped = page.locator("#pers-text").text_content() or ""
    _, _, answered = stopped.partition("echo: ")
    assert answered and message.startswith(answered) and len(answered) < len(message)  # a prefix of the answer
    assert len(scheduler._batch.sizes) < 300  # the rows left long before the answers were done
    assert page.locator("#pers-text").text_content() == stopped  # nothing more arrives


@pytest.fixture
def timing_out_app(store: Store, tmp_path: Path) -> Iterator[str]:
    """A slow fake under a 1 s time limit per generation: a long compare fails mid-stream."""
    from tailorlm.serve import create_app, run_in_thread
    from tailorlm.settings import load_settings

    settings = load_settings(cache_dir=tmp_path / "cache", serve={"memory": False, "request_timeout_s": 1.0})
    app = create_app(settings, store=store, generator=ContextNotingFake(step_seconds=0.05), admin_key=ADMIN_KEY)
    with run_in_thread(app) as url:
        yield url


def test_a_compare_that_fails_mid_stream_says_so(sync_api: Any, page: Any, timing_out_app: str) -> None:
    expect = sync_api.expect
    _start_long_compare(page, timing_out_app)
    expect(page.locator("#pers-text")).to_contain_text("echo: word0")  # it had begun
    failed = re.compile(r"Could not compare: the (personalized|baseline) answer failed")
    expect(page.locator("#status")).to_contain_text(failed)
    expect(page.locator("#status")).to_contain_text("longer than the server's limit of 1 s")
    expect(page.locator("#status")).to_have_class(re.compile(r"\berror\b"))
    expect(page.locator("#pers-meta")).to_contain_text("failed")
    expect(page.get_by_role("button", name="Compare answers")).to_be_enabled()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
