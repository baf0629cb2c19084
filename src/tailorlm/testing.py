"""Reusable test helpers: a model-free :class:`FakeGenerator` and a local OpenAI-style server.

``FakeGenerator`` (like dspy's ``DummyLM``) lets pure-logic tests of prompting, RAG and
evaluation code run in milliseconds without a model. :func:`openai_test_server` puts any
:class:`~tailorlm.models.base.Generator` behind ``POST /v1/chat/completions`` on
127.0.0.1, so the HTTP backend (and the official ``openai`` client) can be tested over
real sockets without a vLLM install; :func:`fake_vllm_server` adds vLLM's runtime LoRA
routes (:class:`FakeVLLM`), for the adapter sync.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the real ``Request``
# class on the endpoint below, which is imported inside a function and so cannot be
# resolved from a string annotation.
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tailorlm.models.base import (
    AdapterHost,
    BackendError,
    GenerationConfig,
    Generator,
    Messages,
    count_prompt_tokens,
    count_text_tokens,
    cut_at_stop,
    normalize_batch,
    resolve_adapters,
)

__all__ = [
    "FakeCall",
    "FakeDecodeBatch",
    "FakeGenerator",
    "FakeVLLM",
    "amazon_subset",
    "fake_vllm_server",
    "openai_test_server",
]


@dataclass(frozen=True)
class FakeCall:
    """One recorded :meth:`FakeGenerator.generate` call, with its inputs normalized."""

    batch: list[list[dict[str, str]]]
    config: GenerationConfig
    adapters: list[str | None]


@dataclass
class FakeGenerator:
    """Deterministic stand-in for a model: answers ``prefix + last user message``.

    With an adapter the answer is tagged ``[name] ``, so tests can see which adapter a row
    was routed to. Words stand in for tokens: answers are cut to ``max_new_tokens`` words,
    then at stop strings. If ``adapters`` is given, other adapter names raise ValueError
    like the real backends; if it is None, any name is accepted. Every call is recorded
    in ``calls``.
    """

    name: str = "fake"
    prefix: str = "echo: "
    adapters: Iterable[str] | None = None
    calls: list[FakeCall] = field(default_factory=list)
    #: compute time each decode step of :meth:`decode_batch` stands for (0: instant)
    step_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.adapters is not None:
            self.adapters = list(self.adapters)

    def generate(
        self,
        batch: Sequence[Messages],
        *,
        config: GenerationConfig | None = None,
        adapter: str | Sequence[str | None] | None = None,
    ) -> list[str]:
        config = config or GenerationConfig()
        convs = normalize_batch(batch)
        rows = resolve_adapters(adapter, len(convs))
        if self.adapters is not None:
            for name in rows:
                if name is not None and name not in self.adapters:
                    raise ValueError(f"unknown adapter {name!r}; loaded: {self.adapters}")
        self.calls.append(FakeCall(convs, config, rows))
        return [self._answer(c, config, a) for c, a in zip(convs, rows, strict=True)]

    def _answer(self, conv: list[dict[str, str]], config: GenerationConfig, adapter: str | None) -> str:
        return cut_at_stop(" ".join(self._words(conv, config, adapter)), config.stop).strip()

    def _words(self, conv: list[dict[str, str]], config: GenerationConfig, adapter: str | None) -> list[str]:
        last_user = next((m["content"] for m in reversed(conv) if m["role"] == "user"), "")
        tag = f"[{adapter}] " if adapter is not None else ""
        return f"{tag}{self.prefix}{last_user}".split(" ")[: config.max_new_tokens]

    def decode_batch(self) -> "FakeDecodeBatch":
        """A continuous batch that emits one word per step (see :class:`FakeDecodeBatch`)."""
        return FakeDecodeBatch(self)


class FakeDecodeBatch:
    """The fake's :class:`~tailorlm.models.continuous.DecodeBatch`: one word per row per step.

    The answer is :meth:`FakeGenerator._answer`'s, streamed through the same
    :class:`~tailorlm.models.continuous.TextStream` as the real batch; each call is recorded
    in the generator's ``calls`` as a batch of one. ``sizes`` records the batch size of
    every step, so tests can see rows join and leave.
    """

    def __init__(self, fake: FakeGenerator) -> None:
        self.fake = fake
        self.rows: dict[int, tuple[list[str], int, Any, GenerationConfig]] = {}
        self.sizes: list[int] = []
        self.prefills: list[int] = []  # rows per prefill pass: 1 for add, n for add_many
        self.interrupted = False
        self.gave_way: list[int] = []  # len(sizes) whenever a step gave way (before any compute)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row_id: int, row: Any, config: GenerationConfig) -> list[Any]:
        from tailorlm.models.continuous import TextStream

        conv = normalize_batch([row.messages])[0]
        if self.fake.adapters is not None and row.adapter is not None and row.adapter not in self.fake.adapters:
            raise ValueError(f"unknown adapter {row.adapter!r}; loaded: {self.fake.adapters}")
        self.fake.calls.append(FakeCall([conv], config, [row.adapter]))
        self.rows[row_id] = (self.fake._words(conv, config, row.adapter), 0, TextStream(config.stop), config)
        self.prefills.append(1)
        return [self._advance(row_id)]

    def groupable(self, row: Any) -> bool:
        return row.soft_prompt is None and (
            self.fake.adapters is None or row.adapter is None or row.adapter in self.fake.adapters
        )

    def add_many(self, items: Sequence[tuple[int, Any, GenerationConfig]]) -> list[Any]:
        """Like the real batch's: the rows join in one prefill pass (recorded in ``prefills``)."""
        if not all(self.groupable(row) for _, row, _ in items):
            raise ValueError("a row that cannot be prefilled in a group")
        events = [ev for item in items for ev in self.add(*item)]
        del self.prefills[-len(items) :]
        self.prefills.append(len(items))
        return events

    def step(self, interrupt: Any = None) -> list[Any]:
        """One word per row; gives way, as the real batch does between layers, when
        ``interrupt()`` is true at its start (no row advances)."""
        self.interrupted = interrupt is not None and bool(interrupt())
        if self.interrupted:
            self.gave_way.append(len(self.sizes))
            return []
        self.sizes.append(len(self.rows))
        if self.fake.step_seconds:
            time.sleep(self.fake.step_seconds)  # stands for the model's compute time
        return [self._advance(i) for i in list(self.rows)]

    def remove(self, row_id: int) -> None:
        self.rows.pop(row_id, None)

    def _advance(self, row_id: int) -> Any:
        from tailorlm.models.continuous import RowEvent

        words, n, stream, config = self.rows[row_id]
        n += 1
        self.rows[row_id] = (words, n, stream, config)
        text = " ".join(words[:n]) + (" " if n < len(words) else "")
        last = n >= len(words)
        delta, stopped = stream.update(text, final=last)
        if not (last or stopped):
            return RowEvent(row_id, delta)
        del self.rows[row_id]
        reason = "length" if n >= config.max_new_tokens and not stopped else "stop"
        return RowEvent(row_id, delta, True, reason, cut_at_stop(text, config.stop).strip(), n)


@contextlib.contextmanager
def openai_test_server(
    generator: Generator, *, requests: list[dict[str, Any]] | None = None, timeout_s: float = 30
) -> Iterator[str]:
    """Serve ``generator`` OpenAI-style on 127.0.0.1; yields the base URL (ending in ``/v1``).

    A request whose ``model`` is not the generator's name selects that adapter, as with
    vLLM. Each request body is appended to ``requests`` when a list is given. Generator
    errors become OpenAI-style error responses: ValueError -> 400, :class:`BackendError`
    -> its own status code (500 if none), anything else -> 500.
    """
    with _serve_app(_build_app(generator, requests), timeout_s) as url:
        yield url


@contextlib.contextmanager
def _serve_app(app: Any, timeout_s: float) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port of 127.0.0.1; yields ``.../v1``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with other servers
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="openai-test-server", daemon=True)
    thread.start()
    try:
        _wait_until_listening(port, server, thread, timeout_s)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()


def _wait_until_listening(port: int, server: Any, thread: threading.Thread, timeout_s: float) -> None:
    """Poll until the server accepts connections. The socket is bound but not listening
    until uvicorn starts, so a successful connect means it is serving."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the test server thread exited during startup")
        if server.started:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return
        time.sleep(0.01)
    raise TimeoutError(f"the test server on port {port} did not start within {timeout_s} s")


def _build_app(generator: Generator, requests: list[dict[str, Any]] | None) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="tailorlm test server")

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        names = [generator.name, *(generator.adapters if isinstance(generator, AdapterHost) else [])]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "tailorlm"} for n in names],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return error(400, "request body must be a JSON object", "invalid_request_error")
        if requests is not None:
            requests.append(body)
        if body.get("stream"):
            return error(400, "streaming is not supported by the test server", "invalid_request_error")
        from starlette.concurrency import run_in_threadpool

        try:  # a thread, so a slow model does not block the event loop
            return await run_in_threadpool(_complete, generator, body)
        except (ValueError, TypeError) as exc:
            return error(400, str(exc), "invalid_request_error")
        except BackendError as exc:
            return error(exc.status_code or 500, str(exc), "server_error")
        except Exception as exc:
            return error(500, f"{type(exc).__name__}: {exc}", "server_error")

    return app


def _complete(generator: Generator, body: dict[str, Any]) -> dict[str, Any]:
    """Run one OpenAI chat request through ``generator``; returns the response JSON."""
    messages = body.get("messages")
    model = body.get("model") or generator.name
    stop = body.get("stop") or ()
    temperature, top_p = body.get("temperature"), body.get("top_p")
    config = GenerationConfig(  # OpenAI's defaults where a field is missing
        max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        seed=body.get("seed"),
    )
    adapter = None if model == generator.name else model
    text = generator.generate([messages], config=config, adapter=adapter)[0]
    prompt_tokens = count_prompt_tokens(generator, messages)
    completion_tokens = count_text_tokens(generator, text)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@dataclass
class FakeVLLM:
    """What a vLLM server started with ``--enable-lora`` and runtime LoRA updating holds.

    Serve it with :func:`fake_vllm_server`. It answers as vLLM does where tailorlm relies on
    it: ``/v1/load_lora_adapter`` refuses a name already loaded (400) and a folder it cannot
    read (404, after ``mounts``), ``/v1/unload_lora_adapter`` an unknown name (404),
    ``/v1/models`` lists the base model and each adapter (``root``: its path, ``parent``: the
    base model), and a chat naming a model it does not hold is a 404. Every call is recorded
    in ``calls`` as ``(route, body)``, route one of "models", "load", "unload", "chat".
    """

    generator: Generator  # answers the chats; its name is the base model's
    mounts: dict[str, str] = field(default_factory=dict)  # server path prefix -> local folder
    loaded: dict[str, str] = field(default_factory=dict)  # lora_name -> lora_path
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_load: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (status, message)
    load_delay_s: float = 0.0  # how long a load takes (so loads can overlap)
    forget_loads: bool = False  # loads succeed but nothing stays (a server that keeps restarting)
    max_loading: int = 0  # most loads seen in progress at once
    _loading: int = 0

    def restart(self) -> None:
        """A restarted vLLM forgets every adapter loaded at run time."""
        self.loaded.clear()

    def count(self, route: str, name: str | None = None) -> int:
        """Calls of ``route`` (for ``name``: its ``lora_name``, or a chat's ``model``)."""
        key = "model" if route == "chat" else "lora_name"
        return sum(1 for r, body in list(self.calls) if r == route and (name is None or body.get(key) == name))

    def readable(self, path: str) -> bool:
        """Whether the server would find a PEFT folder at ``path``: with ``mounts`` it sees
        only those (a container), without them the files of this machine."""
        for prefix, local in self.mounts.items():
            if PurePosixPath(path).is_relative_to(prefix):
                return (Path(local) / PurePosixPath(path).relative_to(prefix) / "adapter_config.json").is_file()
        return not self.mounts and (Path(path) / "adapter_config.json").is_file()


@contextlib.contextmanager
def fake_vllm_server(fake: FakeVLLM, *, timeout_s: float = 30) -> Iterator[str]:
    """Serve ``fake`` on 127.0.0.1 over real HTTP; yields the base URL (ending in ``/v1``)."""
    with _serve_app(_build_vllm_app(fake), timeout_s) as url:
        yield url


def _build_vllm_app(fake: FakeVLLM) -> Any:
    import asyncio

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="fake vLLM")
    base = fake.generator.name

    def error(status: int, message: str, kind: str) -> JSONResponse:  # vLLM's ErrorResponse
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        fake.calls.append(("models", {}))
        cards = [{"id": base, "object": "model", "root": base, "parent": None}]
        cards += [{"id": n, "object": "model", "root": p, "parent": base} for n, p in fake.loaded.items()]
        return {"object": "list", "data": cards}

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request) -> Any:
        body = await request.json()
        fake.calls.append(("load", body))
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        fake._loading += 1
        fake.max_loading = max(fake.max_loading, fake._loading)
        try:
            await asyncio.sleep(fake.load_delay_s)
        finally:
            fake._loading -= 1
        if name in fake.loaded:  # checked after the load time: vLLM serializes loads per name
            return error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        if name in fake.fail_load:
            return error(*fake.fail_load[name], "BadRequestError")
        if not fake.readable(path):
            return error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        if not fake.forget_loads:
            fake.loaded[name] = path
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request) -> Any:
        body = await request.json()
        fake.calls.append(("unload", body))
        name = body.get("lora_name")
        if name not in fake.loaded:
            return error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del fake.loaded[name]
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        fake.calls.append(("chat", body))
        model = body.get("model")
        if model != base and model not in fake.loaded:
            return error(404, f"The model `{model}` does not exist.", "NotFoundError")
        try:
            return await run_in_threadpool(_complete, fake.generator, body)
        except Exception as exc:
            return error(500, f"{type(exc).__name__}: {exc}", "InternalServerError")

    return app


def amazon_subset(path: Path, out: Path, *, n_users: int = 8, min_reviews: int = 6) -> Path:
    """The first ``n_users`` reviewers (sorted by id) with at least ``min_reviews`` reviews of
    an Amazon reviews file (gzipped JSON lines), written to ``out`` as a small JSONL file:
    real data at test size."""
    import gzip
    import json
    from collections import defaultdict

    by_user: dict[str, list[str]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            by_user[json.loads(line)["reviewerID"]].append(line)
    users = sorted(u for u, lines in by_user.items() if len(lines) >= min_reviews)[:n_users]
    out.write_text("".join(line for u in users for line in by_user[u]), encoding="utf-8")
    return out
