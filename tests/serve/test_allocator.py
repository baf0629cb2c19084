"""The service fixes glibc's mmap threshold, so a large transient buffer (a scrypt key check
takes 16 MiB) is returned to the system when freed instead of staying resident."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

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
