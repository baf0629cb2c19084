"""Keep a bounded set of registered adapters loaded in one generator (LRU).

Why: loading a LoRA adapter costs ~0.1 s and memory, and a service sees many users;
keeping the most recently used ``capacity`` adapters loaded makes a repeat user free
and bounds memory. Names come from the registry and change whenever weights change,
so a retrained adapter is loaded fresh rather than served stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tailorlm.models.base import AdapterHost

if TYPE_CHECKING:
    from tailorlm.adapters.registry import AdapterRecord, AdapterRegistry

__all__ = ["AdapterCache"]


class AdapterCache:
    """LRU of adapters loaded into ``generator`` (anything with add_adapter/delete_adapter/adapters).

    ``loads`` and ``evictions`` count what the cache did, so tests and benchmarks can see it.
    Adapters the cache did not load itself are never evicted by it.
    """

    def __init__(self, generator: Any, registry: AdapterRegistry | None = None, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.generator = generator
        self.registry = registry
        self.capacity = capacity
        self.loads = 0
        self.evictions = 0
        self._lru: OrderedDict[str, AdapterRecord] = OrderedDict()
        self._lock = threading.RLock()

    def __contains__(self, name: str) -> bool:
        return name in self._lru

    @property
    def loaded(self) -> list[str]:
        """Names this cache holds loaded, least recently used first."""
        with self._lock:
            return list(self._lru)

    def ensure(self, record: AdapterRecord) -> str:
        """Load ``record`` if it is not loaded yet (evicting the LRU one when full); its name."""
        with self._lock:
            name = record.name
            if name in self._lru:
                self._lru.move_to_end(name)
                return name
            if not isinstance(self.generator, AdapterHost):  # e.g. an HTTP backend that loads by name
                return name
            if name in (self.generator.adapters or ()):  # loaded by someone else: use it, do not own it
                return name
            while len(self._lru) >= self.capacity:
                old, _ = self._lru.popitem(last=False)
                if old in self.generator.adapters:
                    self.generator.delete_adapter(old)
                self.evictions += 1
            self.generator.add_adapter(name, record.path)
            self._lru[name] = record
            self.loads += 1
            return name

    def discard(self, predicate: Callable[[AdapterRecord], bool]) -> list[str]:
        """Unload the adapters whose record matches ``predicate`` (e.g. a forgotten user's)."""
        with self._lock:
            gone = [n for n, r in self._lru.items() if predicate(r)]
            for name in gone:
                del self._lru[name]
                if name in self.generator.adapters:
                    self.generator.delete_adapter(name)
            return gone

    def unload_all(self) -> None:
        """Unload every adapter this cache loaded (the generator is then the base model again)."""
        with self._lock:
            while self._lru:
                name, _ = self._lru.popitem(last=False)
                if name in self.generator.adapters:
                    self.generator.delete_adapter(name)
