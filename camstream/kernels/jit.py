"""Numba kernels that load when first needed, each with a NumPy twin that computes the same values bit for bit.

Importing Numba and loading a cached kernel costs about 0.7 s (the import, its typing context, SciPy's BLAS
check): more than the rest of a warm ONNX Runtime start. So `camstream run` calls `use_twins_until_loaded()`
before its first frame and `load_in_background(warm_up)` after it: frames in between are drawn by the twins, and
the kernels take over once a thread has loaded Numba and run `warm_up` (tests/test_kernels.py holds each pair to
equal outputs). Everywhere else, a kernel's first call loads Numba and compiles it there, as a plain `njit` would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

_KERNELS: list[Kernel] = []
_LOCK = threading.RLock()
_READY = threading.Event()  # Numba is imported and every kernel is wrapped: all threads use the kernels
_LOADER = threading.local()  # `.active` on the thread running `load_in_background`'s warm-up
_twins_until_loaded = False
_loader_thread: threading.Thread | None = None
_ready_at: float | None = None  # time.time() when the kernels took over


class Kernel:
    """`loops` (plain Python over arrays) compiled by `numba.njit(cache=True, **options)` when first needed;
    `numpy` (set with the `twin` decorator) runs in its place while `camstream run` waits for Numba."""

    def __init__(self, loops: Callable, options: dict[str, Any]) -> None:
        self.loops = loops
        self.options = options
        self.numpy: Callable | None = None
        self._compiled: Any = None
        self.__name__ = loops.__name__
        self.__doc__ = loops.__doc__
        _KERNELS.append(self)

    def twin(self, numpy_version: Callable) -> Callable:
        """Decorator: `numpy_version` takes the kernel's arguments and writes / returns the same values."""
        self.numpy = numpy_version
        return numpy_version

    def __call__(self, *args: Any) -> Any:
        if not _READY.is_set() and not getattr(_LOADER, "active", False):
            if _twins_until_loaded and self.numpy is not None:
                return self.numpy(*args)
            load()
        return self.compiled()(*args)

    def compiled(self) -> Any:
        """The Numba dispatcher (made on first use; it compiles, or loads from Numba's cache, per argument types)."""
        if self._compiled is None:
            with _LOCK:
                if self._compiled is None:
                    import numba

                    if "prange" in self.loops.__code__.co_names:  # the module's `prange = range` becomes Numba's
                        self.loops.__globals__["prange"] = numba.prange
                    self._compiled = numba.njit(cache=True, **self.options)(self.loops)
        return self._compiled


def kernel(**options: Any) -> Callable[[Callable], Kernel]:
    """Decorator: a `Kernel` of `loops`, jitted with `options` (e.g. nogil=True, parallel=True; parallel loops
    say `prange`, which their module binds to `range` until Numba's replaces it)."""
    return lambda loops: Kernel(loops, options)


def load() -> None:
    """Import Numba and wrap every kernel now, on this thread; from here on every thread uses the kernels."""
    global _twins_until_loaded, _ready_at
    with _LOCK:
        if _READY.is_set():
            return
        for each in _KERNELS:
            each.compiled()
        _twins_until_loaded = False
        _ready_at = time.time()
        _READY.set()


def use_twins_until_loaded() -> None:
    """Until `load_in_background` (or `load`) is done, kernels that Numba has not loaded yet run their twins."""
    global _twins_until_loaded
    if not _READY.is_set():
        _twins_until_loaded = True


def load_in_background(warm_up: Callable[[], None]) -> threading.Thread | None:
    """Start (once) a thread that imports Numba, runs `warm_up` (kernel calls on the argument types to come,
    which compile or load them) and then hands every thread the kernels. None when they are loaded already."""
    global _loader_thread
    with _LOCK:
        if _READY.is_set() or _loader_thread is not None:
            return _loader_thread

        def run() -> None:
            _LOADER.active = True
            try:
                warm_up()
            except Exception as exc:  # the twins go on drawing until `load` below
                logging.getLogger("camstream").debug("warming the kernels failed: %r", exc)
            finally:  # a kernel that failed to compile fails again, and says why, where it is called
                load()

        _loader_thread = threading.Thread(target=run, name="camstream-kernels", daemon=True)
        _loader_thread.start()
        return _loader_thread


def stop_using_twins(timeout_s: float = 60.0) -> None:
    """Wait for a background load to end (a thread importing at interpreter exit can crash it), and let later
    calls load Numba where they are made."""
    global _twins_until_loaded
    if _loader_thread is not None:
        _loader_thread.join(timeout_s)
    _twins_until_loaded = False


def ready_at() -> float | None:
    """time.time() when the kernels took over from the twins (None: not yet)."""
    return _ready_at
