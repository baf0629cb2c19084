"""Bounds on the service's resident memory: glibc's mmap threshold is fixed, so a large
transient buffer (a scrypt key check takes 16 MiB) is returned to the system when freed, and
personalizations, whose working sets grow with their users' histories, run a bounded number
at once."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
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


def _growth(mode: str) -> tuple[bool, float]:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variables from the caller
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env, check=True)
    applied, growth = out.stdout.split()
    return applied == "True", float(growth)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the mmap threshold is a glibc setting")
def test_a_fixed_mmap_threshold_returns_scrypt_buffers_to_the_system() -> None:
    applied, growth = _growth("fix")
    assert applied
    assert growth < 4.0, f"RSS grew {growth:.1f} MB over 4 scrypt checks with the threshold fixed"


def test_the_operators_environment_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.serve.allocator import fix_mmap_threshold

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold(1 << 20) is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert fix_mmap_threshold(0) is False


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
