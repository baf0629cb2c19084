"""Bounds on the service's resident memory: glibc's mmap threshold is fixed, so a large
transient buffer (a scrypt key check takes 16 MiB) is returned to the system when freed;
threads share a capped number of heaps, so memory one request thread freed serves the next;
freed heap pages are trimmed periodically; and personalizations, whose working sets grow with
their users' histories, run a bounded number at once."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from serve_harness import settings_for

from tailorlm.data import Store
from tailorlm.serve.app import create_app
from tailorlm.serve.service import personalize_threads
from tailorlm.testing import FakeGenerator

_PROBE = """
import hashlib, sys
from tailorlm.serve.allocator import fix_mmap_threshold

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

applied = fix_mmap_threshold(1 << 20) if sys.argv[1] == "fix" else False
hashlib.scrypt(b"secret", salt=b"salt", n=2**14, r=8, p=1, maxmem=64 << 20)
before = rss_mb()
for _ in range(4):
    hashlib.scrypt(b"secret", salt=b"salt", n=2**14, r=8, p=1, maxmem=64 << 20)
print(applied, rss_mb() - before)
"""


# Four threads, all alive, one after another allocate 25 MiB in 64 KiB blocks (below any mmap
# threshold) and free all but the last block (so no heap can shrink from its top): what the
# service's request threads do with buffers that grow with a user's history.
_ARENA_PROBE = """
import sys, threading
from tailorlm.serve.allocator import limit_arenas

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

applied = limit_arenas(int(sys.argv[1]))
go, done = [threading.Event() for _ in range(4)], [threading.Event() for _ in range(4)]
release = threading.Event()

def work(i):
    go[i].wait()
    blocks = [bytearray(64 << 10) for _ in range(400)]
    pin = blocks[-1]
    del blocks
    done[i].set()
    release.wait()

threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
before = rss_mb()
for i in range(4):
    go[i].set()
    done[i].wait()
grown = rss_mb() - before
release.set()
for t in threads:
    t.join()
print(applied, grown)
"""

# 25 MiB freed in 64 KiB chunks below a pinned last block: resident until trimmed.
_TRIM_PROBE = """
import sys
from tailorlm.serve.allocator import trim

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

blocks = [bytearray(64 << 10) for _ in range(400)]
pin = blocks[-1]
del blocks
before = rss_mb()
released = trim() if sys.argv[1] == "trim" else False
print(released, before - rss_mb())
"""


def _probe(code: str, arg: str) -> tuple[bool, float]:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variables from the caller
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, env=env, check=True)
    applied, figure = out.stdout.split()
    return applied == "True", float(figure)


def _growth(mode: str) -> tuple[bool, float]:
    return _probe(_PROBE, mode)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the mmap threshold is a glibc setting")
def test_a_fixed_mmap_threshold_returns_scrypt_buffers_to_the_system() -> None:
    applied, growth = _growth("fix")
    assert applied
    assert growth < 4.0, f"RSS grew {growth:.1f} MB over 4 scrypt checks with the threshold fixed"


def test_the_operators_environment_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.serve.allocator import fix_mmap_threshold, limit_arenas

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold(1 << 20) is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert fix_mmap_threshold(0) is False
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas(2) is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="arenas are a glibc setting")
def test_capped_arenas_let_one_threads_freed_memory_serve_the_next() -> None:
    applied, capped = _probe(_ARENA_PROBE, "2")
    unapplied, per_thread = _probe(_ARENA_PROBE, "0")
    assert applied and not unapplied
    # one heap per thread: each keeps its 25 MiB; two heaps shared by the four threads: at most two do
    assert per_thread > 80, f"per-thread heaps kept only {per_thread:.1f} MB (glibc's default arenas changed?)"
    assert capped < 0.6 * per_thread, f"capped at 2 arenas: {capped:.1f} MB vs {per_thread:.1f} MB per thread"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is a glibc function")
def test_trim_returns_freed_heap_pages_and_the_trimmer_runs_until_stopped() -> None:
    from tailorlm.serve.allocator import PeriodicTrim

    released, freed = _probe(_TRIM_PROBE, "trim")
    _, untrimmed = _probe(_TRIM_PROBE, "none")
    assert released and freed > 15, f"malloc_trim returned {freed:.1f} of 25 MB"
    assert abs(untrimmed) < 5  # without the trim the freed chunks stay resident
    assert PeriodicTrim(0).start() is False
    trimmer = PeriodicTrim(0.01)
    assert trimmer.start() and not trimmer.start()  # one thread per trimmer
    give_up = time.monotonic() + 30
    while trimmer.trims < 2 and time.monotonic() < give_up:  # polls the condition, bounded
        threading.Event().wait(0.01)
    trimmer.stop()
    assert trimmer.trims >= 2 and trimmer._thread is None


def test_personalizations_run_at_most_the_configured_number_at_once(tmp_path: Path) -> None:
    """Each personalization holds a working set that grows with its user's history: more of
    them at once than the CPUs adds resident memory, not speed (serve.personalize_threads)."""
    assert personalize_threads(3) == 3 and personalize_threads(0) == (os.cpu_count() or 1)
    settings = settings_for(tmp_path, personalize_threads=2)
    store = Store(settings.resolved_store_url)
    svc = create_app(settings, store=store, generator=FakeGenerator()).state.service
    release, inside, peak, lock = threading.Event(), [0], [0], threading.Lock()

    def personalize() -> None:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        assert release.wait(30)
        with lock:
            inside[0] -= 1

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(svc.generate, personalize)
            limiter = svc._limiter
            while inside[0] <= 2 and (limiter is None or limiter.statistics().tasks_waiting < 3 or inside[0] < 2):
                await anyio.lowlevel.checkpoint()  # until two run and three wait (or a third got in)
                limiter = svc._limiter
            assert peak[0] == 2 and limiter is not None and limiter.borrowed_tokens == 2
            release.set()

    anyio.run(main)
    assert peak[0] == 2 and inside[0] == 0
    store.close()
