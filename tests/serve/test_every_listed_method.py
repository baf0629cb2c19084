"""Every ``tailorlm/...`` model the service lists at ``/v1/models`` answers a real chat.

The real app (uvicorn in a thread, as the other service tests run it) over a real SQLite
store with two Amazon-like reviewers, the packaged SmolLM2 (session fixture ``smollm``)
and the packaged MiniLM embedder. The parametric methods' artifacts are trained once for
the module with tiny settings on the task the chat service personalizes for ("chat"):

- LoRA: a global adapter and the test user's own adapter;
- DPO: a global adapter, the test user's own adapter, and one global adapter per
  Personalized-Soups dimension;
- softprompt: the global projector.

The persona aliases need nothing of their own: the service fits its methods on an empty
population (``pooled_context`` off), so a user has no persona there and the granularity
rule serves them the global adapter.

The ids come from ``/v1/models`` at run time, never from a list in this file, so a newly
registered method or featured pipeline is covered as soon as it is listed; an id that
needs an artifact this module does not train fails, naming the id. Each answer must be a
200 with text and a ``tailorlm`` usage record naming the method; for the adapter and
soft-prompt methods the record must name the trained artifact, and a spy on the
generator checks that the model call itself got that adapter or soft prompt.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_harness import settings_for

from tailorlm.data import Document, Preference, Store, TaskExample, User
from tailorlm.serve import create_app, new_api_key, run_in_thread

pytestmark = pytest.mark.model

TASK = "chat"  # the task the service personalizes chats for: Query(text, task="chat")
USER = "alice"  # the stored user every listed model is asked for
OTHER = "bob"  # a second reviewer, part of the training population
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "steps": 1, "batch_size": 1, "max_length": 32, "lr": 5e-3}
DPO = {"r": 4, "alpha": 8, "steps": 1, "batch_size": 1, "max_pairs": 2, "max_prompt_tokens": 8,
       "max_completion_tokens": 4, "lr": 5e-3}  # fmt: skip
SOFTPROMPT = {"hidden": 16, "n_tokens": 2, "steps": 1, "batch_size": 1, "max_length": 32}
QUESTION = "Which guitar strings should I buy next?"

# (user, item, time, rating, title, review): Amazon musical-instrument style reviews. Each
# first sentence is long enough next to its title to give concise/detailed pairs (Soups).
REVIEWS = [
    (USER, "B0002E1G5C", 1000, 5, "Warm and mellow",
     "These nylon strings gave my classical guitar a warm and mellow voice. They took two days "
     "to settle in, but now they hold their tuning through long practice sessions."),
    (OTHER, "B0002GMGYA", 1050, 5, "Crushing distortion",
     "This distortion pedal delivers a thick and aggressive tone for metal riffs. It is built like "
     "a tank and survived a year of band rehearsals in my garage."),
    (USER, "B000068NW5", 1100, 5, "Clean vocals at last",
     "The pop filter removed the harsh plosives from my home vocal recordings. The gooseneck is "
     "sturdy and the clamp fits my desk stand without any wobble."),
    (OTHER, "B0002E2KPC", 1150, 4, "Holds drop tuning",
     "These heavy gauge strings hold drop C tuning without buzzing on my baritone guitar. They feel "
     "stiff at first but the low end is tight and punchy."),
    (USER, "B000EEJ9KG", 1200, 4, "Fast and accurate",
     "This clip-on tuner reads every string quickly even in a noisy classroom full of kids. The "
     "display is bright enough to see on stage and the battery lasts for months."),
    (OTHER, "B000CZ0RK6", 1250, 2, "Noisy cable",
     "The instrument cable crackles whenever I move around the stage during a gig. I had to "
     "replace it after a month because the jack came loose from the plug."),
    (USER, "B0002F7K7Y", 1300, 4, "Comfortable strap",
     "The padded leather strap keeps my shoulder comfortable during long guitar lessons. The ends "
     "are tight enough that the guitar never slips off the strap pegs."),
]  # fmt: skip


def _records() -> list[Any]:
    """Users, their reviews, one chat example per review (the user's own title as the
    answer: what LoRA and the projector learn from) and a few dated preference pairs."""
    recs: list[Any] = [
        User(user_id=USER, age=34, occupation="teacher", attributes={"plays": "classical guitar"}),
        User(user_id=OTHER, age=22, occupation="student", attributes={"plays": "metal"}),
    ]
    for user, item, ts, rating, title, text in REVIEWS:
        doc = Document(
            user_id=user, doc_kind="review", text=text, title=title, rating=rating, item_id=item, timestamp=ts
        )
        example = TaskExample(
            task=TASK, example_id=f"{user}-{item}", user_id=user, input=f"Give a short title for this review: {text}",
            target=title, doc_id=doc.doc_id, timestamp=ts,
        )  # fmt: skip
        recs += [doc, example]
    recs += [
        Preference(user_id=USER, prompt="Suggest guitar strings for me.", chosen="Warm nylon strings.",
                   rejected="Heavy steel strings.", source="workbench", timestamp=1010),
        Preference(user_id=USER, prompt="Which tuner should I get?", chosen="A quiet clip-on tuner.",
                   rejected="A loud pedal tuner.", source="workbench", timestamp=1110),
        Preference(user_id=OTHER, prompt="Suggest guitar strings for me.", chosen="Heavy gauge strings.",
                   rejected="Light nylon strings.", source="workbench", timestamp=1060),
    ]  # fmt: skip
    return recs


@dataclass
class Served:
    url: str
    store: Store
    admin_key: str
    trained: dict[str, Any]  # what the fixture trained, by a short label
    calls: list[dict[str, Any]] = field(default_factory=list)  # the generator's generate() calls
    train_seconds: float = 0.0

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=300)


@dataclass
class Answer:
    """One chat through one listed model id, and what the model was handed for it."""

    status: int
    body: dict[str, Any]
    text: str  # the raw response (for failure messages)
    model_calls: list[dict[str, Any]]
    seconds: float


def _train(smollm: Any, embedder: Any, store: Store) -> dict[str, Any]:
    """The minimum the listed parametric methods need, each trained once, 1 step."""
    from tailorlm.adapters import AdapterRegistry
    from tailorlm.models.base import model_fingerprint
    from tailorlm.personalize.registry import get_trainer
    from tailorlm.personalize.soups import SoupsConfig
    from tailorlm.personalize.training.jobs import TrainContext, TrainJob
    from tailorlm.personalize.training.pairs import PairConfig, derive_pairs

    report = derive_pairs(store, [USER, OTHER], config=PairConfig(task=TASK, dimensions=True))
    assert report.stored, f"no preference pairs derived from the reviews: {report}"
    registry = AdapterRegistry(store, base_model=model_fingerprint(smollm))
    ctx = TrainContext(store=store, registry=registry, generator=smollm, embedder=embedder, users=[USER, OTHER])
    lora, dpo, softprompt = get_trainer("lora"), get_trainer("dpo"), get_trainer("softprompt")
    trained = {
        "lora-global": lora(TrainJob("lora", "global", "", TASK, LORA), ctx),
        "lora-user": lora(TrainJob("lora", "user", USER, TASK, LORA), ctx),
        "dpo-global": dpo(TrainJob("dpo", "global", "", TASK, DPO), ctx),
        "dpo-user": dpo(TrainJob("dpo", "user", USER, TASK, DPO), ctx),
        "softprompt": softprompt(TrainJob("softprompt", "global", "", TASK, SOFTPROMPT), ctx),
    }
    for dim in SoupsConfig().dimensions:  # what the service's soups mixes
        trained[f"soups-{dim}"] = dpo(TrainJob("dpo", "global", "", TASK, {**DPO, "dimension": dim}), ctx)
    return trained


@pytest.fixture(scope="module")
def served(smollm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import torch

    from tailorlm.models import SentenceTransformerEmbedder

    tmp = tmp_path_factory.mktemp("every-method")
    settings = settings_for(tmp, memory=False)
    store = Store(settings.resolved_store_url, files_dir=tmp / "files")
    store.add(_records())
    from tailorlm.models.continuous import ContinuousBatch

    loaded_before = list(smollm.adapters)
    real_add = ContinuousBatch.add
    calls: list[dict[str, Any]] = []

    def spy(self: ContinuousBatch, row_id: int, row: Any, config: Any) -> Any:  # what the scheduler prefills
        calls.append({"adapter": [row.adapter] if row.adapter else None,
                      "soft_prompt": [True] if row.soft_prompt is not None else None})  # fmt: skip
        return real_add(self, row_id, row, config)

    # One intra-op thread for this module: its tensors are tiny, and on a 2-core machine
    # shared with other jobs two OpenMP threads wait on each other (measured: a training
    # step of the 135M model took 12 s with 2 threads under load, 1 s with 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    try:
        start = time.perf_counter()
        embedder = SentenceTransformerEmbedder()
        trained = _train(smollm, embedder, store)
        trained_s = time.perf_counter() - start
        admin_key = new_api_key()
        app = create_app(settings, store=store, generator=smollm, embedder=embedder, admin_key=admin_key)
        mp.setattr(ContinuousBatch, "add", spy)
        with run_in_thread(app) as url:
            yield Served(url, store, admin_key, trained, calls, trained_s)
    finally:
        mp.undo()
        torch.set_num_threads(threads)
        with warnings.catch_warnings():  # PEFT warns when the active adapter goes
            warnings.simplefilter("ignore", UserWarning)
            for name in [n for n in smollm.adapters if n not in loaded_before]:
                smollm.delete_adapter(name)
        store.close()


def _parts(model_id: str) -> list[type]:
    """The method classes a ``tailorlm/<spec>`` id is built from (through the registry)."""
    from tailorlm.personalize.registry import REGISTRY, resolve_alias

    return [REGISTRY[resolve_alias(p.strip())[0]].method_cls for p in model_id.removeprefix("tailorlm/").split("+")]


@pytest.fixture(scope="module")
def answers(served: Served) -> dict[str, Answer]:
    """One chat per ``tailorlm/...`` id listed at /v1/models, asked with the user's own key."""
    with served.client(served.admin_key) as admin:
        key = admin.post("/v1/keys", json={"user_id": USER}).raise_for_status().json()["key"]
        listed = [m["id"] for m in admin.get("/v1/models").raise_for_status().json()["data"]]
    out: dict[str, Answer] = {}
    with served.client(key) as client:
        for model_id in (m for m in listed if m.startswith("tailorlm/")):
            served.calls.clear()
            body = {"model": model_id, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4,
                    "temperature": 0}  # fmt: skip
            t0 = time.perf_counter()
            r = client.post("/v1/chat/completions", json=body)
            data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            out[model_id] = Answer(r.status_code, data, r.text, list(served.calls), time.perf_counter() - t0)
    return out


def _problems(served: Served, model_id: str, answer: Answer) -> list[str]:
    """What is wrong with one listed model's answer (empty: it works)."""
    from tailorlm.personalize.lora.method import LoraPersonalizer
    from tailorlm.personalize.softprompt.method import SoftPromptPersonalizer
    from tailorlm.personalize.soups.method import SoupsPersonalizer

    if answer.status != 200:
        return [f"HTTP {answer.status}: {answer.text[:600]}"]
    problems = []
    if not (answer.body["choices"][0]["message"]["content"] or "").strip():
        problems.append("empty answer")
    usage = answer.body.get("tailorlm")
    if not usage:
        return [*problems, "no 'tailorlm' usage record"]
    if usage.get("method") != model_id.removeprefix("tailorlm/") or usage.get("user") != USER:
        problems.append(f"usage names method {usage.get('method')!r} and user {usage.get('user')!r}")
    if not answer.model_calls:
        return [*problems, "the model was never called"]
    chat_call = answer.model_calls[-1]  # earlier calls (if any) wrote a profile summary
    classes = _parts(model_id)
    if any(issubclass(c, LoraPersonalizer | SoupsPersonalizer) for c in classes):
        adapter = usage.get("adapter")
        if not adapter:
            problems.append(f"no adapter in the usage record: {usage}")
        elif chat_call["adapter"] != [adapter]:
            problems.append(f"usage says adapter {adapter!r}, the model got adapter={chat_call['adapter']!r}")
    if any(issubclass(c, SoupsPersonalizer) for c in classes):
        mixed = {r["id"].split(":", 1)[1] for r in usage["retrieved"] if r["block"] == "soups"}
        want = {rec.name for label, rec in served.trained.items() if label.startswith("soups-")}
        if mixed != want:
            problems.append(f"soups mixed {sorted(mixed)}, trained {sorted(want)}")
    if any(issubclass(c, SoftPromptPersonalizer) for c in classes):
        soft = usage.get("soft_prompt") or {}
        if soft.get("projector") != served.trained["softprompt"].name or not soft.get("history_items"):
            problems.append(f"the usage record does not show the trained projector's soft prompt: {soft or usage}")
        if chat_call["soft_prompt"] != [True]:
            problems.append(f"the model got no soft prompt (soft_prompt={chat_call['soft_prompt']})")
    return problems


def test_every_listed_tailorlm_model_answers_a_stored_user(served: Served, answers: dict[str, Answer]) -> None:
    from tailorlm.personalize.registry import method_names

    unlisted = {f"tailorlm/{n}" for n in method_names()} - set(answers)
    assert not unlisted, f"registered methods missing from /v1/models: {sorted(unlisted)}"
    failures = {m: p for m, a in answers.items() if (p := _problems(served, m, a))}
    timing = ", ".join(f"{m.removeprefix('tailorlm/')} {a.seconds:.1f}s" for m, a in answers.items())
    print(f"\ntrained in {served.train_seconds:.0f}s; {len(answers) - len(failures)}/{len(answers)} work: {timing}")
    assert not failures, "listed models that do not work through the service:\n" + "\n".join(
        f"  {m}: {'; '.join(p)}" for m, p in failures.items()
    )


def test_the_scoped_aliases_serve_the_adapters_trained_for_them(served: Served, answers: dict[str, Answer]) -> None:
    """``<method>-user`` gets the user's own adapter, ``-global`` the global one, and ``-persona``
    the global one too: without a pooled population the user has no persona."""
    from tailorlm.personalize.lora.method import LoraPersonalizer
    from tailorlm.personalize.registry import resolve_alias

    scoped = []
    for model_id, answer in answers.items():
        spec = model_id.removeprefix("tailorlm/")
        if "+" in spec or not issubclass(_parts(model_id)[0], LoraPersonalizer):
            continue
        name, config = resolve_alias(spec)
        want = {"user": "user", "global": "global", "persona": "global"}.get(config.get("scope", "auto"))
        if want is None or answer.status != 200:  # "auto", or failing (reported by the test above)
            continue
        rec = served.trained.get(f"{name}-{want}")
        assert rec is not None, f"{model_id}: this module trained no {name} adapter at {want} scope"
        usage = answer.body["tailorlm"]
        assert (usage["adapter"], usage["scope"]) == (rec.name, want), (model_id, usage)
        scoped.append(spec)
    assert scoped, f"no lora/dpo scope alias answered among {sorted(answers)}"


def test_the_artifacts_are_the_tiny_ones_this_module_trained(served: Served) -> None:
    for label, rec in served.trained.items():
        assert rec.meta["steps"] == 1 and Path(rec.path).is_dir(), label
