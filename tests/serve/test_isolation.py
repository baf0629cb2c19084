"""Isolation: a user-scoped key for alice can read, change or delete nothing of bob's, on any route.

Routes are enumerated from the app itself, so a route added later is covered
automatically, or fails this test until it says how that route is exercised. Every
user route is called for bob (who exists) and for ghost (who does not): both must be
refused alike with 403, so a key also learns nothing about which users exist. A
positive control sends the same request for alice, so a refusal cannot come from a
malformed request. Afterwards bob's export and keys are exactly as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi.routing import iter_route_contexts
from serve_harness import ALICE_DOCS, BOB_DOCS, Live, live_server

from tailorlm.data import Fact

A, B = "alice", "bob"
CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "Which strings and pedals should I buy?"}]


@dataclass(frozen=True)
class Call:
    """One request; ``{user}`` in the path (and ``"{user}"`` values in the body) is filled per target."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    # deny: refused for bob; allow: succeeds without showing bob's data; public: any status, no bob data
    expect: Literal["deny", "allow", "public"] = "deny"
    control: bool = True  # also send it for alice and require success (not for destructive calls)


def _fill(value: Any, user: str) -> Any:
    if isinstance(value, str):
        return value.replace("{user}", user)
    if isinstance(value, dict):
        return {k: _fill(v, user) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, user) for v in value]
    return value


def _known_routes(bob_fact: str, alice_fact: str, bob_key_id: str) -> dict[tuple[str, str], list[Call]]:
    """How each route is exercised. Add a new route here, or the test fails naming it."""
    u = "/v1/users/{user}"
    upload = b'{"kind": "document", "text": "planted by someone else"}\n'
    return {
        ("GET", "/v1/models"): [Call("GET", "/v1/models", expect="allow")],
        ("POST", CHAT): [
            Call("POST", CHAT, json={"model": "tailorlm/rag-bm25", "user": "{user}", "messages": ASK}),
            Call("POST", CHAT, json={"model": "tailorlm/rag-bm25+profile", "user": "{user}", "messages": ASK}),
            Call("POST", CHAT, json={"model": "tailorlm/rag-bm25", "user": "{user}", "messages": ASK, "stream": True}),
            Call("POST", CHAT, json={"model": "fake", "user": "{user}", "messages": ASK}),
            # Without ``user`` the key's own user is served: only alice's data may appear.
            Call("POST", CHAT, json={"model": "tailorlm/rag-bm25", "messages": ASK}, expect="allow"),
        ],
        ("GET", "/v1/users"): [Call("GET", "/v1/users", expect="allow")],
        ("POST", "/v1/users"): [Call("POST", "/v1/users", json={"user_id": "{user}", "age": 99})],
        ("GET", "/v1/users/{user_id}"): [Call("GET", u)],
        ("DELETE", "/v1/users/{user_id}"): [Call("DELETE", u, control=False)],
        ("GET", "/v1/users/{user_id}/export"): [Call("GET", f"{u}/export")],
        ("GET", "/v1/users/{user_id}/documents"): [Call("GET", f"{u}/documents")],
        ("POST", "/v1/users/{user_id}/documents"): [
            Call("POST", f"{u}/documents", json={"text": "planted"}),
            # alice's own path, bob named in the body: refused too (it must not write to bob).
            Call("POST", "/v1/users/alice/documents", json={"user_id": B, "text": "planted"}, control=False),
        ],
        ("GET", "/v1/users/{user_id}/interactions"): [Call("GET", f"{u}/interactions")],
        ("POST", "/v1/users/{user_id}/interactions"): [Call("POST", f"{u}/interactions", json={"item_id": "x"})],
        ("GET", "/v1/users/{user_id}/preferences"): [Call("GET", f"{u}/preferences")],
        ("POST", "/v1/users/{user_id}/preferences"): [
            Call("POST", f"{u}/preferences", json={"prompt": "p", "chosen": "a", "rejected": "b"})
        ],
        ("POST", "/v1/users/{user_id}/upload"): [
            Call("POST", f"{u}/upload", content=upload),
            Call("POST", "/v1/users/alice/upload", content=b'{"user_id": "bob", "text": "planted"}\n', control=False),
        ],
        ("GET", "/v1/users/{user_id}/facts"): [Call("GET", f"{u}/facts")],
        ("DELETE", "/v1/users/{user_id}/facts/{fact_id}"): [
            Call("DELETE", f"{u}/facts/{bob_fact}", control=False),
            Call("DELETE", f"/v1/users/alice/facts/{alice_fact}", expect="allow", control=False),
        ],
        ("POST", "/v1/users/{user_id}/compare"): [
            Call("POST", f"{u}/compare", json={"message": "strings?"}),
            Call("POST", f"{u}/compare", json={"message": "strings?", "stream": True}),
        ],
        ("GET", "/v1/users/{user_id}/overview"): [Call("GET", f"{u}/overview")],
        # Admin-only: a user key is refused whoever it names.
        ("POST", "/v1/keys"): [Call("POST", "/v1/keys", json={"user_id": "{user}"}, control=False)],
        ("GET", "/v1/keys"): [Call("GET", "/v1/keys", control=False)],
        ("DELETE", "/v1/keys/{key_id}"): [Call("DELETE", f"/v1/keys/{bob_key_id}", control=False)],
    }


def _public_call(path: str) -> Call:
    """Routes outside /v1 need no key and must hold no user data: fill any parameter and look."""
    filled = path
    while "{" in filled:
        start, end = filled.index("{"), filled.index("}")
        filled = filled[:start] + "app.js" + filled[end + 1 :]
    return Call("GET", filled, expect="public", control=False)


def _send(client: httpx.Client, call: Call, user: str) -> httpx.Response:
    kwargs: dict[str, Any] = {}
    if call.json is not None:
        kwargs["json"] = _fill(call.json, user)
    if call.content is not None:
        kwargs["content"] = call.content
    return client.request(call.method, _fill(call.path, user), **kwargs)


def _bob_state(live: Live) -> tuple[Any, Any]:
    with live.admin() as c:
        return c.get(f"/v1/users/{B}/export").json(), c.get("/v1/keys", params={"user_id": B}).json()


def _leaks(response: httpx.Response, secrets: list[str]) -> list[str]:
    text = response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        text = json.dumps(response.json(), ensure_ascii=False)
    return [s for s in secrets if s in text]


def test_a_user_key_cannot_touch_another_user_on_any_route(live: Live) -> None:
    live.store.add_fact(Fact(user_id=B, fact_id="bob-fact", text="Bob's secret: he hates jazz."))
    live.store.add_fact(Fact(user_id=A, fact_id="alice-fact", text="Alice teaches on Mondays."))
    bob_key = live.user_key(B)
    bob_key_id = bob_key.split("_", 2)[1]
    alice = live.as_user(A)
    known = _known_routes("bob-fact", "alice-fact", bob_key_id)
    secrets = [*BOB_DOCS, "he hates jazz", "Heavy gauge.", "pedal-9", f'"{B}"', bob_key_id]
    before = _bob_state(live)

    plan: list[tuple[str, Call]] = []
    for route in iter_route_contexts(live.app.routes):
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        path = route.path_format
        for method in methods:
            if (method, path) in known:
                plan += [(f"{method} {path}", call) for call in known[(method, path)]]
            elif not path.startswith("/v1/") and method == "GET":
                plan.append((f"{method} {path}", _public_call(path)))
            else:
                raise AssertionError(
                    f"route {method} {path} is not covered by the isolation test: add it to _known_routes"
                )
    covered = {name for name, _ in plan}
    missing = {f"{m} {p}" for m, p in known} - covered
    assert not missing, f"routes the test knows but the app no longer has: {missing}"

    failures = []
    for name, call in plan:
        if call.expect in ("allow", "public"):
            r = _send(alice, call, A)
            if (call.expect == "allow" and r.status_code >= 400) or _leaks(r, secrets):
                failures.append(f"{name}: {r.status_code}, leaked {_leaks(r, secrets)}: {r.text[:200]}")
            continue
        targets = [B, "ghost"] if "{user}" in json.dumps([call.path, call.json]) else [B]
        for target in targets:
            r = _send(alice, call, target)
            if r.status_code not in (403, 404, 409, 422) or _leaks(r, secrets):  # refused, however
                failures.append(f"{name} for {target}: {r.status_code} {r.text[:200]}")
            elif "{user}" in call.path and r.status_code != 403:
                failures.append(f"{name} for {target}: {r.status_code}, expected 403 whether or not the user exists")
        if call.control:
            r = _send(alice, call, A)
            if r.status_code >= 400:
                failures.append(f"{name}: the control request for alice failed ({r.status_code} {r.text[:200]})")
    alice.close()
    assert not failures, "\n".join(failures)
    assert _bob_state(live) == before  # nothing of bob's changed
    with live.client(bob_key) as c:  # and bob's key still works
        assert c.get(f"/v1/users/{B}").status_code == 200


def test_pooled_context_helps_cold_users_without_showing_them_others_data(tmp_path: Path) -> None:
    """With ``pooled_context`` a user without history is served from the population (global
    scope), but the entries of other users are redacted from what the caller sees."""
    with live_server(tmp_path, memory=False, pooled_context=True) as server:
        with server.admin() as c:
            c.post("/v1/users", json={"user_id": "newbie"}).raise_for_status()
        with server.as_user("newbie") as c:
            r = c.post(CHAT, json={"model": "tailorlm/rag-bm25", "messages": ASK})
            overview = c.get("/v1/users/newbie/overview").json()
        usage = r.json()["tailorlm"]
        assert usage["scope"] == "global" and overview["scope"] == "global" and overview["pooled_context"]
        assert usage["retrieved"] and all(item["id"] is None and item["text"] is None for item in usage["retrieved"])
        assert not any(doc in r.text for doc in [*ALICE_DOCS, *BOB_DOCS])
        system = server.generator.calls[-1].batch[0][0]["content"]
        assert any(doc in system for doc in [*ALICE_DOCS, *BOB_DOCS])  # the model did get the pooled context
