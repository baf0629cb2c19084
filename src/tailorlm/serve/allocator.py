"""Keep the C allocator from holding on to memory the service has freed.

A long-running, multi-threaded Python service has three ways to keep freed memory resident
under glibc, each measured by the soak benchmark (``benchmarks/bench_soak.py``):

- **The dynamic mmap threshold.** glibc serves a large allocation by mmap only until such a
  block is freed; it then raises its threshold to that size (up to 32 MiB) and serves later
  ones from the heap of the thread that asked, keeping them after they are freed (a scrypt
  key check takes 16 MiB: +16 MB from the second key check on). A fixed threshold
  (:func:`fix_mmap_threshold`) turns that rule off.
- **One heap (arena) per thread.** glibc gives threads their own arenas, up to 8 per CPU.
  Request threads work on buffers that grow with their users' histories (a BM25 index over
  800 documents, the rows read for it); what one arena freed cannot serve another, so every
  arena keeps its own high-water mark and the process's resident memory grows with the
  histories and the number of threads that touched them. :func:`limit_arenas` caps the
  arenas: the usual setting for threaded servers (in 4-minute soak runs, RSS growth after
  warm-up went from +13.4 % to +5.9 % with 2 arenas at a similar request rate; the full
  10-minute soak with all three settings: +8.4 %, from +17.4 %; RESULTS.md).
- **Free pages inside the heaps.** Freed chunks in the middle of a heap stay resident
  until ``malloc_trim`` gives their pages back; :class:`PeriodicTrim` calls it every few
  seconds from a daemon thread (cheap: it walks the free lists of a few arenas).

Only on glibc; elsewhere nothing changes. An operator's own environment variable
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``) wins over the settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
import threading

__all__ = ["PeriodicTrim", "fix_mmap_threshold", "limit_arenas"]

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _mallopt(param: int, value: int, env: str) -> bool:
    if value <= 0 or os.environ.get(env) is not None:
        return False
    libc = _glibc()
    if libc is None:
        return False
    try:
        return bool(libc.mallopt(param, ctypes.c_int(value)))
    except AttributeError:
        return False


def fix_mmap_threshold(threshold_bytes: int) -> bool:
    """Fix glibc's mmap threshold at ``threshold_bytes`` for this process; True when applied.

    ``threshold_bytes`` 0 leaves the allocator as it is."""
    return _mallopt(_M_MMAP_THRESHOLD, threshold_bytes, "MALLOC_MMAP_THRESHOLD_")


def limit_arenas(max_arenas: int) -> bool:
    """Cap glibc's arenas at ``max_arenas`` for threads that start from now on; True when
    applied. Call it before the request threads start (the app does, when it is built).

    ``max_arenas`` 0 leaves the allocator as it is."""
    return _mallopt(_M_ARENA_MAX, max_arenas, "MALLOC_ARENA_MAX")


def trim() -> bool:
    """Give the pages of freed chunks back to the system (glibc's ``malloc_trim(0)``); True
    when some memory was released."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        return bool(libc.malloc_trim(ctypes.c_size_t(0)))
    except AttributeError:
        return False


class PeriodicTrim:
    """A daemon thread that calls :func:`trim` every ``interval_s`` seconds until :meth:`stop`.

    Does nothing (``start`` returns False) off glibc or with ``interval_s`` <= 0."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.trims = 0  # calls so far; read by tests and the soak benchmark
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        if self.interval_s <= 0 or _glibc() is None or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="tailorlm-malloc-trim", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            trim()
            self.trims += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
