"""Keep the C allocator from holding on to the service's large transient buffers.

glibc serves a large allocation by mmap only until such a block is freed; it then raises
its mmap threshold to that size (up to 32 MiB) and serves later ones from the heap of the
thread that asked, keeping them after they are freed. A long-running service makes many
transient buffers of a few MiB (a scrypt key check takes 16 MiB; a BM25 build over a long
history, a batch of token tensors) from many request threads, so its resident memory steps
up and stays (the soak benchmark measured +16 MB from the second key check on, which
``malloc_trim`` does not give back). A fixed threshold turns the dynamic rule off: blocks
at or above it are always mmapped and returned to the system when freed.

Only on glibc; elsewhere, or when ``MALLOC_MMAP_THRESHOLD_`` is set in the environment
(the operator's own choice wins), nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["fix_mmap_threshold"]

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def fix_mmap_threshold(threshold_bytes: int) -> bool:
    """Fix glibc's mmap threshold at ``threshold_bytes`` for this process; True when applied.

    ``threshold_bytes`` 0 leaves the allocator as it is."""
    if threshold_bytes <= 0 or os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)))
    except (OSError, AttributeError):
        return False
