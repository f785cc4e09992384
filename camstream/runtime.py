"""Process-wide tuning applied once at start-up."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_glibc_malloc() -> bool:
    """Stop glibc from returning and re-faulting the large buffers torch frees and reallocates each forward.

    Same effect as MALLOC_MMAP_THRESHOLD_=32 MiB and MALLOC_TRIM_THRESHOLD_=2 GiB. A large M_TOP_PAD is
    deliberately not set: with it, RSS crept up ~1.8 KB per decoded frame, without bound. Returns False where
    there is no glibc (macOS, musl) or CAMSTREAM_MALLOC_TUNING=0, and nothing changed.
    """
    if not sys.platform.startswith("linux") or os.environ.get("CAMSTREAM_MALLOC_TUNING") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok)


def release_free_memory() -> bool:
    """Hand memory that glibc holds but nobody uses back to the OS (malloc_trim(0)), so that an RSS reading
    taken next starts from what is really in use. False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))
