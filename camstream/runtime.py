"""Process-wide tuning applied once at start-up."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time

import psutil

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


class RssPeak:
    """Context manager sampling this process's RSS every `interval_s` on a daemon thread; `peak_mb` is the
    highest reading above the one taken on entry (the working memory of what ran inside)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._process = psutil.Process()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_mb = 0.0

    def _sample(self) -> None:
        while True:
            rss = self._process.memory_info().rss / 2**20
            self.peak_mb = max(self.peak_mb, rss - self._start_mb)
            if self._done.wait(self.interval_s):
                return

    def __enter__(self) -> RssPeak:
        self._start_mb = self._process.memory_info().rss / 2**20
        self._done.clear()
        self._thread = threading.Thread(target=self._sample, name="rss-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        assert self._thread is not None
        self._thread.join()


def process_start_time() -> float:
    """When this process started, as a `time.time()` value.

    On Linux: the start's clock ticks since boot (/proc/self/stat) added to the boot moment read from the clocks
    (`time.time()` − `CLOCK_BOOTTIME`), within a tick (10 ms). psutil's create_time adds the ticks to /proc/stat's
    boot time, which is whole seconds, so it put the start up to a second early (0.78 s on one machine) and every
    time-to-first-frame that much late; it stays the answer elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/stat", encoding="ascii") as handle:
                fields = handle.read().rpartition(")")[2].split()  # after the command name, which may hold spaces
            ticks = int(fields[19])  # field 22 of proc(5), starttime; the name was field 2, the state field 3
            booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
            return booted + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            pass
    return psutil.Process(os.getpid()).create_time()


PYTHON_START_MAX_S = 1.0  # more than this from the process's start to camstream's import: something ran first


def run_start_time() -> float:
    """What times to the first frame count from, as a `time.time()` value: the process's start, or camstream's
    import where that came more than `PYTHON_START_MAX_S` later.

    A shell that runs other commands and then execs camstream (`sh -c "setup && camstream run"`: the last command
    of a `-c` string is exec'd) hands over a process that started with the shell, so the process's start alone
    counted the setup too (6 s of `sleep 6` in one trial). Python itself takes 20–100 ms to import camstream,
    which a start counted from the import leaves out."""
    import camstream

    started = process_start_time()
    return camstream.IMPORTED_AT if camstream.IMPORTED_AT - started > PYTHON_START_MAX_S else started
