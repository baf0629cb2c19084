"""A :class:`~tailorlm.models.base.Generator` talking to an OpenAI-compatible HTTP server.

Targets vLLM (and anything speaking ``POST /v1/chat/completions``): the per-user LoRA
adapter travels in the request's ``model`` field, which is how vLLM's multi-LoRA serving
selects an adapter. This class only sends the name; ``adapter_sync = "vllm"`` selects
:class:`~tailorlm.models.vllm_sync.VLLMAdapterGenerator`, which also loads the adapter into
the server. httpx is used directly rather than the ``openai`` package to keep the dependency
small and the error handling explicit; it is imported lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tailorlm.models.base import (
    BackendError,
    GenerationConfig,
    Messages,
    normalize_batch,
    resolve_adapters,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["OpenAICompatibleGenerator"]

_RETRY_STATUS = frozenset({429, 503})  # the server asks us to come back later


class OpenAICompatibleGenerator:
    """Chat completions over HTTP; a batch becomes concurrent requests, answers keep order.

    ``base_url`` includes the API prefix, e.g. ``http://127.0.0.1:8000/v1``. Requests
    answered 429 or 503 are retried up to ``max_retries`` times with exponential backoff
    (or the server's ``Retry-After``, capped); other failures raise :class:`BackendError`
    at once, because retrying a 400 or a 500 only delays the same error.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120,
        max_concurrency: int = 4,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        import httpx

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not 0 <= max_retries <= 3:
            raise ValueError(f"max_retries must be in [0, 3], got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_concurrency),
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleGenerator(base_url={self.base_url!r}, model={self.name!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(
        self,
        batch: Sequence[Messages],
        *,
        config: GenerationConfig | None = None,
        adapter: str | Sequence[str | None] | None = None,
    ) -> list[str]:
        """Answer each conversation; ``adapter`` names become the request ``model``."""
        config = config or GenerationConfig()
        convs = normalize_batch(batch)
        rows = resolve_adapters(adapter, len(convs))
        bodies = [self._body(c, config, a) for c, a in zip(convs, rows, strict=True)]
        if len(bodies) <= 1:
            return [self._complete(b) for b in bodies]
        with ThreadPoolExecutor(min(self.max_concurrency, len(bodies))) as pool:
            return list(pool.map(self._complete, bodies))  # map keeps the input order

    def _body(self, messages: list[dict[str, str]], config: GenerationConfig, adapter: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": adapter if adapter is not None else self.name,
            "messages": messages,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "stream": False,
        }
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        return body

    def _complete(self, body: dict[str, Any]) -> str:
        response = self._post_with_retries(body)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.base_url}: malformed chat completion response: {response.text[:200]!r}") from exc
        return (content or "").strip()

    def _post_with_retries(self, body: dict[str, Any]) -> httpx.Response:
        import httpx

        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.post("/chat/completions", json=body)
            except httpx.TimeoutException as exc:
                raise BackendError(f"{self.base_url}: request timed out ({exc})") from exc
            except httpx.TransportError as exc:
                raise BackendError(f"cannot reach {self.base_url}: {exc}") from exc
            if response.is_success:
                return response
            if response.status_code not in _RETRY_STATUS or attempt == self.max_retries:
                break
            time.sleep(self._delay(response, attempt))
        raise BackendError(
            f"{self.base_url} answered HTTP {response.status_code}: {_error_message(response)}",
            status_code=response.status_code,
        )

    def _delay(self, response: httpx.Response, attempt: int) -> float:
        """Honour ``Retry-After`` (in seconds) when given, but never wait more than 30 s."""
        try:
            retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            retry_after = self.backoff_s * 2**attempt
        return min(max(retry_after, 0.0), 30.0)


def _error_message(response: httpx.Response) -> str:
    """The server's own explanation: OpenAI's ``{"error": {"message"}}``, FastAPI's
    ``{"detail"}``, or the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "detail" in data:
            return str(data["detail"])
        if "message" in data:
            return str(data["message"])
    return response.text[:500]
