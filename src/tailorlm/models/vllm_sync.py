"""Per-user LoRA adapters on a vLLM server, loaded on first use (``adapter_sync = "vllm"``).

Why: vLLM serves many LoRA adapters over one base model and picks one by the request's
``model`` field, but only adapters it holds. tailorlm's adapters are trained offline and live
as PEFT folders under the store's files folder, so the HTTP backend has to put them there:
:class:`VLLMAdapterSync` loads an adapter with ``POST /v1/load_lora_adapter`` (``lora_name``,
``lora_path``) right before the first request that needs it, keeps at most ``max_adapters``
of the ones it loaded (least recently used go first, with ``POST /v1/unload_lora_adapter``),
and never unloads one that a request in flight is using (reference counts).

The server's state can change behind our back, so every disagreement is repaired, not
fatal: "already loaded" (another client, or this process before a restart) counts as
loaded; the adapters the server lists at start (``GET /v1/models``) are adopted, and the
ones under tailorlm's adapter folder count toward the bound; an adapter the server no
longer knows (it restarted) is loaded again and the request retried once.

Names are the registry's (``lora-user-<key sha>-<weights sha>``): unique per adapter version,
so a retrained adapter is a new name and never served stale. The paths sent are as the
*server* sees them: ``path_map`` maps tailorlm's folder to the server's mount of it.

What this module leaves out: finding the adapter (the registry, one layer up, passes the
folder in through :meth:`VLLMAdapterGenerator.add_adapter`, as for the local backend).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tailorlm.errors import ConfigError
from tailorlm.models.base import BASE_ADAPTER, BackendError
from tailorlm.models.openai_http import OpenAICompatibleGenerator, _error_message

if TYPE_CHECKING:
    import httpx

__all__ = ["VLLMAdapterGenerator", "VLLMAdapterSync", "is_unknown_model_error"]

log = logging.getLogger(__name__)

#: Names vLLM stores and echoes in /v1/models; the registry's names are a subset.
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_UNKNOWN = ("does not exist", "not found", "cannot be found", "unknown")


def is_unknown_model_error(exc: BackendError) -> bool:
    """Whether a chat completion failed because the server does not hold the model named
    (vLLM: 404 "The model `x` does not exist."; some versions answer 400 with a message)."""
    if exc.status_code == 404:
        return True
    return exc.status_code == 400 and any(s in str(exc).lower() for s in _UNKNOWN)


@dataclass
class _Entry:
    """One adapter as far as the server is concerned (by our account)."""

    refs: int = 0  # requests using it now: never unloaded while > 0
    loaded: bool = False
    owned: bool = True  # ours to unload (False: --lora-modules or another client's)
    path: str | None = None  # the server-side path it was loaded from
    doomed: bool = False  # forgotten: unload as soon as no request uses it


class _Flight:
    """A load or unload of one adapter in progress: others wait for it instead of repeating it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class VLLMAdapterSync:
    """Which adapters a vLLM server holds, loading and unloading them on demand (thread-safe).

    Args:
        client: an ``httpx.Client`` whose base URL is the server's ``/v1`` prefix.
        base_url: that prefix, for messages.
        base_model: the served base model's name (never loaded, never unloaded).
        max_adapters: adapters loaded by tailorlm kept on the server; more are unloaded,
            least recently used first. In-use adapters may push it over for a while.
        path_map: local folder -> the same folder as the server sees it (a container
            mount); the longest matching prefix wins, other paths are sent unchanged.
        adapter_root: tailorlm's adapter folder (local); adapters the server lists at
            start from under it are adopted as ours (counted, may be unloaded).

    ``loads`` and ``unloads`` count the successful calls, for tests and benchmarks.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        base_model: str,
        max_adapters: int = 32,
        path_map: Mapping[str, str] | None = None,
        adapter_root: str | Path | None = None,
    ) -> None:
        if max_adapters < 1:
            raise ConfigError(f"max_server_adapters must be >= 1, got {max_adapters}")
        self._client, self.base_url, self.base_model = client, base_url, base_model
        self.max_adapters = max_adapters
        self._path_map = _checked_map(path_map or {})
        self._root = self.server_path(adapter_root) if adapter_root is not None else None
        self.loads = 0
        self.unloads = 0
        self._paths: dict[str, str] = {}  # registered name -> server-side path
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._reconcile_lock = threading.Lock()
        self._reconciled = False

    # -- registration ----------------------------------------------------------------------

    def server_path(self, path: str | Path) -> str:
        """``path`` as the server sees it (see ``path_map``)."""
        local = Path(path).expanduser().resolve()
        for src, dst in self._path_map:
            if local.is_relative_to(src):
                return PurePosixPath(dst).joinpath(*local.relative_to(src).parts).as_posix()
        return local.as_posix()

    def register(self, name: str, path: str | Path) -> None:
        """Make ``name`` loadable from the folder ``path`` (loaded on its first use).

        Raises:
            ValueError: the name is not a valid adapter name, or the server holds ``name``
                from another folder (a new version needs a new name).
        """
        if not isinstance(name, str) or not _VALID_NAME.match(name) or name in (self.base_model, BASE_ADAPTER):
            raise ValueError(
                f"adapter name {name!r} is not valid for vLLM: letters, digits and . _ : - "
                f"(at most 200, not the base model's name)"
            )
        server = self.server_path(path)
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and (entry.loaded or name in self._flights) and entry.path not in (None, server):
                raise ValueError(
                    f"adapter {name!r} is loaded on {self.base_url} from {entry.path}, not {server}: "
                    "a new adapter version needs a new name (the registry's names carry a weights hash)"
                )
            self._paths[name] = server
            if entry is not None:
                entry.doomed = False

    def forget(self, name: str) -> None:
        """Drop ``name``'s registration and unload it once no request uses it."""
        with self._lock:
            self._paths.pop(name, None)
            entry = self._entries.get(name)
            if entry is not None:
                entry.doomed = True
            victims = self._victims()
        self._unload(victims)

    @property
    def registered(self) -> list[str]:
        """Names this process can load (whether or not they are loaded now)."""
        with self._lock:
            return list(self._paths)

    @property
    def loaded(self) -> list[str]:
        """Adapters on the server by our account, least recently used first."""
        with self._lock:
            return [n for n, e in self._entries.items() if e.loaded]

    # -- use ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Hold ``name`` loaded for one request (loading it first if needed)."""
        pinned = self.acquire(name)
        try:
            yield
        finally:
            if pinned:
                self.release(name)

    def acquire(self, name: str) -> bool:
        """Load ``name`` if needed and pin it; False for a name this process does not manage
        (neither registered nor seen on the server), which is passed to the server as is."""
        self._reconcile_once()
        while True:
            with self._lock:
                flight = self._flights.get(name)
                if flight is None:
                    entry = self._entries.get(name)
                    if entry is not None and entry.loaded:
                        entry.refs += 1
                        self._entries.move_to_end(name)
                        return True
                    path = self._paths.get(name)
                    if path is None:
                        return False
                    entry = self._entries.setdefault(name, _Entry())
                    self._entries.move_to_end(name)
                    entry.refs += 1  # pinned while loading: nothing evicts it under us
                    flight = self._flights[name] = _Flight()
                    break
            flight.done.wait()  # someone else loads (or unloads) it: use their result
            if flight.error is not None:
                status = getattr(flight.error, "status_code", None)
                raise BackendError(str(flight.error), status_code=status) from flight.error
        self._load_pinned(name, path, entry, flight)
        return True

    def _load_pinned(self, name: str, path: str, entry: _Entry, flight: _Flight) -> None:
        """Load ``name`` (its flight is ours); then bound the server's adapters."""
        try:
            self._load(name, path)
        except BaseException as exc:
            with self._lock:
                entry.refs -= 1
                if entry.refs == 0 and not entry.loaded:
                    self._entries.pop(name, None)
                del self._flights[name]
                flight.error = exc
                flight.done.set()
            raise
        with self._lock:
            entry.loaded, entry.owned, entry.path = True, True, path
            del self._flights[name]
            flight.done.set()
            victims = self._victims()
        self._unload(victims)

    def release(self, name: str) -> None:
        """Unpin ``name``; unload what is now over the bound."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.refs == 0:
                return
            entry.refs -= 1
            if entry.refs == 0 and not entry.loaded and name not in self._flights:
                del self._entries[name]
            victims = self._victims()
        self._unload(victims)

    def invalidate(self, name: str) -> None:
        """The server said it does not hold ``name`` (it restarted): the next use reloads it."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and name not in self._flights:
                entry.loaded = False

    # -- the server ----------------------------------------------------------------------

    def reconcile(self) -> None:
        """Adopt the LoRA adapters the server lists (``GET /v1/models``): they are used
        without loading them again; those under ``adapter_root`` count as ours."""
        cards = self._models()
        with self._lock:
            for card in cards:
                name, root = card.get("id"), card.get("root")
                is_lora = card.get("parent") is not None if "parent" in card else name != self.base_model
                if not isinstance(name, str) or name == self.base_model or not is_lora:
                    continue
                entry = self._entries.get(name)
                if entry is None:
                    entry = self._entries[name] = _Entry(owned=self._owns(root), path=_str(root))
                    self._entries.move_to_end(name, last=False)  # adopted: least recently used
                entry.loaded = True
            victims = self._victims()
            self._reconciled = True
        self._unload(victims)

    def _reconcile_once(self) -> None:
        if self._reconciled:
            return
        with self._reconcile_lock:
            if self._reconciled:
                return
            try:
                self.reconcile()
            except BackendError as exc:  # not fatal: "already loaded" covers what we missed
                log.warning("cannot list the adapters on %s: %s", self.base_url, exc)
            self._reconciled = True

    def _owns(self, root: Any) -> bool:
        if self._root is None or not isinstance(root, str):
            return False
        return PurePosixPath(root).is_relative_to(PurePosixPath(self._root))

    def _models(self) -> list[dict[str, Any]]:
        response = self._request("GET", "/models", None, what="list the models")
        if not response.is_success:
            raise BackendError(
                f"{self.base_url} answered HTTP {response.status_code} to GET /models: {_error_message(response)}",
                status_code=response.status_code,
            )
        try:
            data = response.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{self.base_url}: malformed /models response: {response.text[:200]!r}") from exc
        return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []

    def _load(self, name: str, path: str) -> None:
        response = self._request(
            "POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path}, what=f"load adapter {name!r}"
        )
        if response.is_success:
            with self._lock:
                self.loads += 1
            return
        message = _error_message(response)
        if response.status_code == 400 and "already" in message.lower():
            return  # loaded by another client, or by this process before it restarted
        raise BackendError(
            f"{self.base_url} could not load adapter {name!r} from {path}: "
            f"HTTP {response.status_code}: {message}{_load_hint(response.status_code, message)}",
            status_code=response.status_code,
        )

    def _unload(self, names: list[str]) -> None:
        """Unload ``names`` (their flights are ours); failures are logged, never raised: the
        request that triggered the eviction has its own adapter and must not fail for this one."""
        for name in names:
            try:
                response = self._request("POST", "/unload_lora_adapter", {"lora_name": name}, what="unload")
                if response.is_success:
                    with self._lock:
                        self.unloads += 1
                elif response.status_code != 404:  # 404: already gone (the server restarted)
                    log.warning("%s did not unload adapter %r: %s", self.base_url, name, _error_message(response))
            except BackendError as exc:
                log.warning("cannot unload adapter %r: %s", name, exc)
            finally:
                with self._lock:
                    self._flights.pop(name).done.set()

    def _request(self, method: str, route: str, body: dict[str, Any] | None, *, what: str) -> httpx.Response:
        import httpx

        try:
            return self._client.request(method, route, json=body)
        except httpx.TimeoutException as exc:
            raise BackendError(f"{self.base_url}: timed out trying to {what} ({exc})") from exc
        except httpx.TransportError as exc:
            raise BackendError(f"cannot reach {self.base_url} to {what}: {exc}") from exc

    def _victims(self) -> list[str]:
        """Under the lock: owned, idle adapters to unload (LRU first) until at most
        ``max_adapters`` remain, plus forgotten idle ones; each gets an unload flight."""
        ours = [n for n, e in self._entries.items() if e.loaded and e.owned]
        excess = len(ours) - self.max_adapters
        victims: list[str] = []
        for name in ours:
            entry = self._entries[name]
            if entry.refs or name in self._flights or not (excess > 0 or entry.doomed):
                continue
            del self._entries[name]
            self._flights[name] = _Flight()
            victims.append(name)
            excess -= 1
        return victims


def _checked_map(path_map: Mapping[str, str]) -> list[tuple[Path, str]]:
    """``path_map`` validated, longest local prefix first."""
    out: list[tuple[Path, str]] = []
    for src, dst in path_map.items():
        local = Path(src).expanduser()
        if not local.is_absolute() or not PurePosixPath(dst).is_absolute():
            raise ConfigError(f"adapter_path_map needs absolute paths on both sides, got {src!r} -> {dst!r}")
        out.append((local.resolve(), dst.rstrip("/") or "/"))
    return sorted(out, key=lambda pair: len(pair[0].parts), reverse=True)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _load_hint(status: int, message: str) -> str:
    """What to check, for the two failures a deployment most often hits."""
    if status in (404, 405) and message in ("Not Found", "Method Not Allowed"):  # no such route
        return (
            " (the route is missing: start vLLM with --enable-lora and the environment variable "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)"
        )
    if status == 404 or "no adapter found" in message.lower():
        return " (the server must be able to read that folder: see generator.adapter_path_map)"
    return ""


class VLLMAdapterGenerator(OpenAICompatibleGenerator):
    """:class:`OpenAICompatibleGenerator` that loads the adapters it is asked for into vLLM.

    It is a :class:`~tailorlm.models.base.RemoteAdapterHost`: :meth:`add_adapter` registers a
    PEFT folder under a name (no server call), the first request naming it (or
    :meth:`load_adapter`) loads it, and :meth:`delete_adapter` unloads it once idle. Rows
    without an adapter use the base model's name; a name never registered is passed on as
    is (e.g. a ``--lora-modules`` adapter).

    ``adapter_base``: the fingerprint of the local model whose weights the server serves
    (:func:`~tailorlm.models.local_fingerprint`); adapters are looked up under it
    (:func:`~tailorlm.models.base.adapter_fingerprint`), None: under this generator's own.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        max_server_adapters: int = 32,
        adapter_path_map: Mapping[str, str] | None = None,
        adapter_root: str | Path | None = None,
        adapter_base: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_url, model=model, **kwargs)
        self.adapter_base = adapter_base
        self.sync = VLLMAdapterSync(
            self._client,
            base_url=self.base_url,
            base_model=model,
            max_adapters=max_server_adapters,
            path_map=adapter_path_map,
            adapter_root=adapter_root,
        )

    def __repr__(self) -> str:
        return f"VLLMAdapterGenerator(base_url={self.base_url!r}, model={self.name!r})"

    @property
    def adapters(self) -> list[str]:
        """Registered adapter names (loaded on the server on first use)."""
        return self.sync.registered

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Register the PEFT adapter folder ``path`` as ``name``; nothing is sent yet."""
        if not (Path(path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path} is not a PEFT adapter folder (no adapter_config.json)")
        self.sync.register(name, path)

    def load_adapter(self, name: str) -> None:
        """Load the registered adapter ``name`` on the server now, unless it is there already;
        a failure raises :class:`BackendError` here, where the caller can still pick another
        adapter. It stays loaded but unpinned: the next request uses it (or reloads it, if
        it was unloaded in between). A name this process does not manage is left alone."""
        if self.sync.acquire(name):
            self.sync.release(name)

    def delete_adapter(self, name: str) -> None:
        """Forget ``name``; it is unloaded from the server once no request uses it."""
        if name not in self.sync.registered:
            raise ValueError(f"unknown adapter {name!r}; registered: {self.sync.registered}")
        self.sync.forget(name)

    def _complete(self, body: dict[str, Any]) -> str:
        """One request, with its adapter held loaded; reloaded and retried once when the
        server has forgotten it."""
        name = body["model"]
        if name == self.name:
            return super()._complete(body)
        with self.sync.using(name):
            try:
                return super()._complete(body)
            except BackendError as exc:
                if name not in self.sync.registered or not is_unknown_model_error(exc):
                    raise
                log.info("%s forgot adapter %r (restarted?); loading it again", self.base_url, name)
                self.sync.invalidate(name)
            with self.sync.using(name):
                return super()._complete(body)
