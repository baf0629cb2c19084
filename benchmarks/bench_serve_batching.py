"""Continuous batching on the HTTP service: 8 users on 8 LoRA adapters (plus one without), batched vs one at a time.

Usage:
    python benchmarks/bench_serve_batching.py [--clients 8] [--rounds 3] [--new-tokens 64]
                                              [--dtype float32] [--out benchmarks/results/serve_batching.json]

The real model and the real app under uvicorn on 127.0.0.1, in a separate process (this
script re-run with ``--serve``), over a fresh SQLite store. Each of ``--clients`` users has
its own LoRA adapter (r=8 on q_proj/v_proj, small random weights: it changes the answers
without derailing them; throughput does not depend on what the weights learned),
registered in the adapter registry and served through ``tailorlm/lora-user``; one more
client sends the base model's name (no adapter). Prompts are real Amazon reviews when
../shared/data is there (else synthetic text), with a request to reply to the review in a
paragraph (``--ask reply``: answers of about ``--new-tokens``) or to title it (``--ask title``).

The same run starts two servers on the same store: with ``serve.max_batch_size=1`` (the
one-at-a-time path: each request prefilled and decoded alone, in arrival order) and with
``--max-batch`` (continuous batching). Each is warmed up (every user once, then all users
at once for a few tokens). On each, every client sends ``--rounds`` streaming requests one
after another (greedy, ``--new-tokens`` at most, usage included), so all clients are in
flight together (closed loop: each client sends its next request when its last one ends);
that closed loop runs four times, one at a time / batched / batched / one at a time, so a
drift of the VM's speed during the run (a quarter within minutes on the shared 2-core
machines) weighs on both paths alike. Then, on the batched server, a single client
measures time to first token alone (the closed loops' requests, one at a time, so both p99s
are over as many requests); the clients run again with think time between requests
(``--think-s``: arrivals spread out instead of bursts); and a last round of all clients runs
four times, without / with / with / without over-long prompts (a 12,000-token one and a 900 KB
one) sent while it decodes: their 400s are timed and the rounds' throughput with them is
compared with the same rounds (same prompts, same answers) without them.

Reported: aggregate completion tokens/s, time to first token p50/p99, request latency
p50/p99, speedup, whether every greedy answer is identical between the two servers.
Writes the JSON (``--out``) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
AMAZON = (
    Path(os.environ.get("TAILORLM_SHARED_DATA") or REPO.parent / "shared" / "data")
    / "amazon-musical-instruments"
    / "reviews_Musical_Instruments_5.json.gz"
)
ADMIN_ENV = "TAILORLM_BENCH_ADMIN_KEY"


# -- set-up ----------------------------------------------------------------------------------------


def _reviews(n: int) -> list[str]:
    """``n`` real review texts of 40-120 words (synthetic text when the data is absent)."""
    out: list[str] = []
    if AMAZON.is_file():
        with gzip.open(AMAZON, "rt", encoding="utf-8") as f:
            for line in f:
                text = json.loads(line).get("reviewText", "")
                if 40 <= len(text.split()) <= 120:
                    out.append(text)
                if len(out) == n:
                    return out
    words = ["strings", "tuner", "pedal", "guitar", "bass", "amp", "cable", "capo", "pick", "strap", "neck"]
    return [" ".join(words[(i + j) % len(words)] for j in range(80)) for i in range(n)]


def _settings(tmp: Path, **serve: Any) -> Any:
    from tailorlm.settings import load_settings

    os.environ["TAILORLM_CONFIG"] = str(tmp / "no-config.toml")  # ignore the developer's config file
    return load_settings(store_url=f"sqlite:///{tmp / 'store.db'}", serve=serve)


def _prepare(tmp: Path, users: list[str], dtype: str) -> None:
    """Store the users and register one small random LoRA adapter per user."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tailorlm.adapters import AdapterRegistry
    from tailorlm.adapters.registry import AdapterKey
    from tailorlm.data import Document, Store, User
    from tailorlm.models import build_generator
    from tailorlm.models.base import model_fingerprint

    settings = _settings(tmp)
    settings.generator.dtype = dtype
    store = Store(settings.resolved_store_url, files_dir=tmp / "files")
    store.add([User(user_id=u) for u in users])
    store.add([Document(user_id=u, doc_kind="review", text=f"{u} likes warm-sounding gear.") for u in users])
    generator = build_generator(settings)
    registry = AdapterRegistry(store, base_model=model_fingerprint(generator), root=tmp / "adapters")
    base = AutoModelForCausalLM.from_pretrained(generator.path, local_files_only=True)
    model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    for i, user in enumerate(users[:-1]):  # the last user has no adapter
        torch.manual_seed(i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 2e-3)
        key = AdapterKey("lora", "user", user, "chat")
        folder = registry.folder_for(key)
        model.save_pretrained(folder)
        inner = folder / "default" if (folder / "default").is_dir() else folder
        registry.register(key, inner, {"bench": "serve_batching", "seed": i})
    store.close()


def _serve(tmp: Path, port: int, max_batch: int, dtype: str) -> None:
    """The server process: the real app and model over the prepared store."""
    from tailorlm.data import Store
    from tailorlm.serve import create_app
    from tailorlm.serve.server import serve_forever

    settings = _settings(
        tmp, max_batch_size=max_batch, memory=False, rate_limit_per_minute=0, max_concurrent_per_key=32
    )  # fmt: skip: one admin key drives every client
    settings.generator.dtype = dtype
    store = Store(settings.resolved_store_url, files_dir=tmp / "files")
    app = create_app(settings, store=store, admin_key=os.environ[ADMIN_ENV])
    serve_forever(app, host="127.0.0.1", port=port)


# -- clients -------------------------------------------------------------------------------------


async def _chat(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One streaming chat: TTFT (first content), latency, completion tokens, text."""
    start = time.perf_counter()
    ttft = None
    text = ""
    usage: dict[str, Any] = {}
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        phases = {
            name.strip(): float(dur.removeprefix("dur="))
            for name, dur in (p.split(";") for p in r.headers.get("server-timing", "").split(",") if ";" in p)
        }
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                usage = data["usage"]
            for choice in data.get("choices") or []:
                piece = choice.get("delta", {}).get("content")
                if piece:
                    ttft = ttft if ttft is not None else time.perf_counter() - start
                    text += piece
    return {"ttft": ttft, "latency": time.perf_counter() - start, "tokens": usage.get("completion_tokens", 0),
            "text": text, "phases": phases}  # fmt: skip


#: What each request asks about its review: "reply" (a paragraph, so answers run to about
#: ``--new-tokens``, as a chat answer does) or "title" (a few words, then EOS).
ASKS = {
    "reply": "Reply to this customer's product review in one friendly paragraph:",
    "title": "Write a short title for this product review:",
}


def _body(user: str, has_adapter: bool, prompt: str, new_tokens: int, base_name: str, ask: str) -> dict[str, Any]:
    return {
        "model": "tailorlm/lora-user" if has_adapter else base_name,
        "user": user,
        "messages": [{"role": "user", "content": f"{ASKS[ask]}\n\n{prompt}"}],
        "max_tokens": new_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def _round(url: str, key: str, bodies: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(_chat(client, b) for b in bodies))
        return list(results), time.perf_counter() - start


async def _probe_long(url: str, key: str, words: list[str]) -> list[dict[str, Any]]:
    """Over-long prompts while the round runs: each must be a 400, fast."""
    import httpx

    probes = {"12000_tokens": " ".join(words[i % len(words)] for i in range(12_000)), "900_kb": "x" * 900_000}
    out = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        await asyncio.sleep(2.0)  # let the round reach steady decoding first
        for name, content in probes.items():
            body = {"model": "tailorlm/lora-user", "user": "bench-0", "max_tokens": 16,
                    "messages": [{"role": "user", "content": content}]}  # fmt: skip
            start = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=body)
            out.append({"probe": name, "status": r.status_code, "seconds": time.perf_counter() - start,
                        "message": r.json().get("error", {}).get("message", "")[:200]})  # fmt: skip
    return out


async def _closed_loop(
    url: str, key: str, per_client: list[list[dict[str, Any]]], think_s: float = 0.0
) -> tuple[list[dict[str, Any]], float]:
    """Every client sends its requests one after another, all clients at once: the batch
    stays as full as the clients keep it (no waiting for the slowest at each round).

    With ``think_s`` > 0 each client first waits an exponentially distributed time of that
    mean (seeded per client) before each request, as a person reading the last answer would:
    arrivals then spread out instead of coming as one burst whenever the answers end on the
    same step. With 0, every client starts at once and sends again the moment it is answered.
    """
    import random

    import httpx

    async def client_run(client: Any, i: int, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rng = random.Random(1000 + i)
        out = []
        for n, b in enumerate(bodies):
            if think_s > 0:
                await asyncio.sleep(rng.expovariate(1.0 / think_s))
            out.append({**await _chat(client, b), "nth": n})
        return out

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(client_run(client, i, bodies) for i, bodies in enumerate(per_client)))
        return [r for rs in results for r in rs], time.perf_counter() - start


async def _round_with_probes(
    url: str, key: str, bodies: list[dict[str, Any]], reviews: list[str]
) -> tuple[tuple[list[dict[str, Any]], float], list[dict[str, Any]]]:
    words = " ".join(reviews).split()
    return await asyncio.gather(_round(url, key, bodies), _probe_long(url, key, words))


def _start_server(tmp: Path, max_batch: int, dtype: str, key: str) -> tuple[subprocess.Popen, str]:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, ADMIN_ENV: key}
    cmd = [sys.executable, __file__, "--serve", str(tmp), "--port", str(port), "--max-batch", str(max_batch),
           "--dtype", dtype]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 180 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def _warm_up(url: str, key: str, bodies: list[dict[str, Any]]) -> None:
    """Before anything is timed: each user's method and adapter loaded (one request each, one
    at a time), then all users at once, a few tokens each, so the batched shapes (a packed
    burst, a decode step over every row) have run once too, as on a server that has been up."""
    for b in bodies:
        asyncio.run(_round(url, key, [{**b, "max_tokens": 1}]))
    asyncio.run(_round(url, key, [{**b, "max_tokens": 8} for b in bodies]))


def _staggered(url: str, key: str, per_client: list[list[dict[str, Any]]], think_s: float) -> dict[str, Any]:
    """One closed loop with think time (:func:`_closed_loop`), summarized with how many
    requests were in flight on average (their latencies over the wall time)."""
    results, seconds = asyncio.run(_closed_loop(url, key, per_client, think_s))
    print(f"staggered, think {think_s} s: done in {seconds:.1f} s")
    in_flight = sum(r["latency"] for r in results) / seconds
    return {"think_s": think_s, "mean_requests_in_flight": round(in_flight, 2), **_summary([(results, seconds)])}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    idx = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[idx]


def _summary(rounds: list[tuple[list[dict[str, Any]], float]]) -> dict[str, Any]:
    results = [r for rs, _ in rounds for r in rs]
    tokens = sum(r["tokens"] for r in results)
    seconds = sum(s for _, s in rounds)
    ttft = [r["ttft"] * 1000 for r in results if r["ttft"] is not None]
    lat = [r["latency"] * 1000 for r in results]
    names = sorted({name for r in results for name in r.get("phases", {})})
    phases = {name: [r["phases"][name] for r in results if name in r.get("phases", {})] for name in names}
    return {
        "requests": len(results),
        "completion_tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 2),
        "ttft_p50_ms": round(_pct(ttft, 0.5), 1),
        "ttft_p99_ms": round(_pct(ttft, 0.99), 1),
        "latency_p50_ms": round(_pct(lat, 0.5), 1),
        "latency_p99_ms": round(_pct(lat, 0.99), 1),
        # where the time to first token went, server-side (the Server-Timing header)
        "ttft_phases_ms": {
            n: {"p50": round(_pct(v, 0.5), 1), "p99": round(_pct(v, 0.99), 1)} for n, v in phases.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8, help="users with their own adapter (one more has none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--ask", default="reply", choices=sorted(ASKS), help="what each request asks (see ASKS)")
    ap.add_argument("--think-s", default="1,2,4", help="mean think times (s) of the staggered runs; '' for none")
    ap.add_argument("--stagger-rounds", type=int, default=6, help="requests per client in each staggered run")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve_batching.json")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        _serve(args.serve, args.port, args.max_batch, args.dtype)
        return

    from tailorlm.serve.auth import new_api_key

    users = [f"bench-{i}" for i in range(args.clients + 1)]
    thinks = [float(t) for t in args.think_s.split(",") if t.strip()]
    reviews = _reviews(len(users) * (max(args.rounds, args.stagger_rounds) + 2))
    with tempfile.TemporaryDirectory(prefix="bench-serve-batching-") as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        _prepare(tmp, users, args.dtype)
        print(f"prepared {len(users)} users, {args.clients} adapters in {time.perf_counter() - t0:.1f} s")
        key = new_api_key()

        def bodies(r: int, base_name: str) -> list[dict[str, Any]]:
            return [_body(u, i < args.clients, reviews[r * len(users) + i], args.new_tokens, base_name, args.ask)
                    for i, u in enumerate(users)]  # fmt: skip

        runs: dict[str, Any] = {}
        texts: dict[str, list[str]] = {}
        servers: dict[str, tuple[subprocess.Popen, str]] = {}
        try:
            import httpx

            for label, max_batch in (("serial", 1), ("batched", args.max_batch)):
                servers[label] = _start_server(tmp, max_batch, args.dtype, key)

            url = servers["batched"][1]
            models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]
            base_name = models[-1]["id"]
            warm = bodies(max(args.rounds, args.stagger_rounds) + 1, base_name)  # prompts no measurement uses
            for _, url in servers.values():
                _warm_up(url, key, warm)
            per_client = [[bodies(r, base_name)[i] for r in range(args.rounds)] for i in range(len(users))]
            halves: dict[str, list[tuple[list[dict[str, Any]], float]]] = {"serial": [], "batched": []}
            for label in ("serial", "batched", "batched", "serial"):  # ABBA: a drift of the VM's speed cancels
                halves[label].append(asyncio.run(_closed_loop(servers[label][1], key, per_client)))
                print(f"{label}: {_summary(halves[label][-1:])['tokens_per_s']} tokens/s")
            _stop(servers.pop("serial")[0])
            for label, parts in halves.items():
                runs[label] = _summary(parts)
                later = [r["ttft"] * 1000 for rs, _ in parts for r in rs if r["nth"] > 0 and r["ttft"] is not None]
                runs[label]["ttft_p99_ms_after_first"] = round(_pct(later, 0.99), 1)  # the opening bursts left out
                texts[label] = [res["text"] for rs, _ in parts for res in rs]
            url = servers["batched"][1]
            # as many alone as the closed loops had requests, so both p99s are over as many
            alone = [b for r in range(args.rounds) for b in bodies(r, base_name)] * len(halves["batched"])
            runs["single"] = _summary([asyncio.run(_round(url, key, [b])) for b in alone])
            loops = [[bodies(r, base_name)[i] for r in range(args.stagger_rounds)] for i in range(len(users))]
            runs["staggered"] = [_staggered(url, key, loops, think) for think in thinks]
            # the same round without and with over-long prompts, ABBA: a drift of the VM's speed cancels
            last, cleans, probeds, probes = bodies(args.rounds, base_name), [], [], []
            for with_probes in (False, True, True, False):
                if with_probes:
                    got, sent = asyncio.run(_round_with_probes(url, key, last, reviews))
                    probeds.append(got)
                    probes += sent
                else:
                    cleans.append(asyncio.run(_round(url, key, last)))
            runs["clean_round"] = _summary(cleans)
            runs["with_long_prompts"] = {**_summary(probeds), "probes": probes}
        finally:
            for proc, _ in servers.values():
                _stop(proc)

    serial, batched, single = runs["serial"], runs["batched"], runs["single"]
    clean = runs["clean_round"]["tokens_per_s"]
    report = {
        "clients": args.clients,
        "clients_without_adapter": 1,
        "rounds": args.rounds,
        "new_tokens": args.new_tokens,
        "dtype": args.dtype,
        "ask": args.ask,
        "mean_completion_tokens": round(serial["completion_tokens"] / serial["requests"], 1),
        "max_batch_size": args.max_batch,
        "tokens_per_s_serial": serial["tokens_per_s"],
        "tokens_per_s_batched": batched["tokens_per_s"],
        "speedup": round(batched["tokens_per_s"] / serial["tokens_per_s"], 2),
        "ttft_p99_ms_single": single["ttft_p99_ms"],
        "ttft_p99_ms_batched": batched["ttft_p99_ms"],
        "ttft_p99_ratio": round(batched["ttft_p99_ms"] / single["ttft_p99_ms"], 2),
        "ttft_p99_ms_batched_after_first": batched["ttft_p99_ms_after_first"],
        "ttft_p99_ratio_after_first": round(batched["ttft_p99_ms_after_first"] / single["ttft_p99_ms"], 2),
        # the same clients with think time between requests (arrivals spread out, not bursts)
        "ttft_p99_staggered": [
            {
                "think_s": st["think_s"],
                "mean_requests_in_flight": st["mean_requests_in_flight"],
                "ttft_p99_ms": st["ttft_p99_ms"],
                "ttft_p99_ratio": round(st["ttft_p99_ms"] / single["ttft_p99_ms"], 2),
            }
            for st in runs["staggered"]
        ],
        "outputs_identical_fp32": texts["serial"] == texts["batched"] if args.dtype == "float32" else None,
        "outputs_identical_share": round(
            sum(a == b for a, b in zip(texts["serial"], texts["batched"], strict=True)) / len(texts["serial"]), 3
        ),
        "long_prompt_400_seconds": [p["seconds"] for p in runs["with_long_prompts"]["probes"]],
        "long_prompt_statuses": [p["status"] for p in runs["with_long_prompts"]["probes"]],
        "throughput_with_long_prompts_vs_without": round(runs["with_long_prompts"]["tokens_per_s"] / clean, 3),
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    rows = [
        ("aggregate completion tokens/s", serial["tokens_per_s"], batched["tokens_per_s"]),
        ("time to first token p50 ms", serial["ttft_p50_ms"], batched["ttft_p50_ms"]),
        ("time to first token p99 ms", serial["ttft_p99_ms"], batched["ttft_p99_ms"]),
        (
            "the same, each client's first request left out",
            serial["ttft_p99_ms_after_first"],
            batched["ttft_p99_ms_after_first"],
        ),
        ("request latency p50 ms", serial["latency_p50_ms"], batched["latency_p50_ms"]),
        ("request latency p99 ms", serial["latency_p99_ms"], batched["latency_p99_ms"]),
    ]

    def phase_cell(run: dict[str, Any], phase: str) -> str:
        got = run["ttft_phases_ms"].get(phase, {})
        return f"{got.get('p50', '-')} / {got.get('p99', '-')}"

    for phase in batched["ttft_phases_ms"]:
        label = f"TTFT phase '{phase}' p50 / p99 ms (single user: {phase_cell(single, phase)})"
        rows.append((label, phase_cell(serial, phase), phase_cell(batched, phase)))
    md = ["| measurement | one at a time | continuous batching |", "|---|---:|---:|"]
    md += [f"| {name} | {a} | {b} |" for name, a, b in rows]
    md += [
        "",
        f"speedup {report['speedup']}x; single-user TTFT p99 {single['ttft_p99_ms']} ms "
        f"(batched/single {report['ttft_p99_ratio']}x); "
        f"identical greedy answers: {report['outputs_identical_share']:.0%}; "
        f"over-long prompts: HTTP {report['long_prompt_statuses']} in {report['long_prompt_400_seconds']} s, "
        f"throughput meanwhile {report['throughput_with_long_prompts_vs_without']:.0%} of the clean rounds'",
    ]
    if runs["staggered"]:
        md += ["", "| clients with think time (mean s) | requests in flight (mean) | tokens/s | TTFT p50 ms | "
               "TTFT p99 ms | p99 / single user's |", "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        md += [
            f"| {st['think_s']} | {st['mean_requests_in_flight']} | {st['tokens_per_s']} | {st['ttft_p50_ms']} | "
            f"{st['ttft_p99_ms']} | {st['ttft_p99_ms'] / single['ttft_p99_ms']:.2f}x |"
            for st in runs["staggered"]
        ]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
