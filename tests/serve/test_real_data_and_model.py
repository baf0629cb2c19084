"""The service on real inputs: Amazon reviewers uploaded through the API, and the packaged local model."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from serve_harness import Live, live_server

AMAZON = "amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz"


def _reviewers(path: Path, n: int) -> dict[str, list[dict]]:
    """The first ``n`` reviewers (sorted by id) with at least 8 reviews, as JSONL document rows."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            by_user[r["reviewerID"]].append(
                {"kind": "document", "doc_kind": "review", "text": r["reviewText"] or r["summary"],
                 "title": r["summary"], "rating": r["overall"], "item_id": r["asin"],
                 "timestamp": r["unixReviewTime"]}
            )  # fmt: skip
    return {u: by_user[u] for u in sorted(u for u, docs in by_user.items() if len(docs) >= 8)[:n]}


@pytest.fixture(scope="module")
def amazon(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, dict]]:
    users = _reviewers(shared_data / AMAZON, 3)
    with live_server(tmp_path_factory.mktemp("amazon"), seeded=False, memory=False) as server, server.admin() as c:
        for user, docs in users.items():
            c.post("/v1/users", json={"user_id": user}).raise_for_status()
            body = "\n".join(json.dumps(d) for d in docs).encode()
            r = c.post(f"/v1/users/{user}/upload", content=body, headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 201 and r.json()["records"] == len(docs), r.text
        yield server, users


@pytest.mark.data
def test_real_reviewers_get_answers_from_their_own_reviews(amazon: tuple[Live, dict]) -> None:
    live, users = amazon
    first, second, _ = users
    own_titles = {d["title"] for d in users[first]}
    question = f"I need something like: {users[first][0]['title']}"
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.user_key(first), max_retries=0)
    response = client.chat.completions.create(
        model="tailorlm/rag-bm25", messages=[{"role": "user", "content": question}]
    )
    usage = response.model_extra["tailorlm"]
    assert usage["user"] == first and usage["scope"] == "user" and usage["retrieved"]
    assert all(any(t in item["text"] for t in own_titles) for item in usage["retrieved"])  # own reviews only
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="tailorlm/rag-bm25", user=second, messages=[{"role": "user", "content": "x"}]
        )
    with live.admin() as c:
        counts = c.get(f"/v1/users/{second}/overview").json()["counts"]
    assert counts["documents"] == len(users[second])


@pytest.mark.model
def test_the_local_model_behind_the_api(smollm, tmp_path: Path) -> None:
    with live_server(tmp_path, generator=smollm, memory=False) as live:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.user_key("alice"), max_retries=0, timeout=120)
        ask = [{"role": "user", "content": "Suggest guitar strings for me in one sentence."}]
        plain = client.chat.completions.create(model="tailorlm/rag-bm25", messages=ask, max_tokens=8, temperature=0)
        stream = client.chat.completions.create(
            model="tailorlm/rag-bm25", messages=ask, max_tokens=8, temperature=0, stream=True
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        text = plain.choices[0].message.content
        assert text and streamed == text  # greedy: the same answer either way
        assert 0 < plain.usage.completion_tokens <= 8
        assert plain.usage.prompt_tokens > plain.model_extra["tailorlm"]["prompt_tokens"] / 2  # real token counts
        with live.client(live.user_key("alice"), timeout=120) as c:
            body = {"message": "Suggest strings.", "method": "rag-bm25", "max_tokens": 4}
            both = c.post("/v1/users/alice/compare", json=body).json()
        assert both["personalized"]["text"] and both["baseline"]["text"]
