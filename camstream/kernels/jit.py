"""Numba kernels that load when first needed, each with a NumPy twin that computes the same values bit for bit.

Importing Numba and loading a cached kernel costs about 0.7 s (the import, its typing context, SciPy's BLAS
check): more than the rest of a warm ONNX Runtime start. So `camstream run` calls `use_twins_until_loaded()`
before its first frame and `load_in_background(warm_up)` after it: frames in between are drawn by the twins, and
the kernels take over once a thread has loaded Numba and run `warm_up` (tests/test_kernels.py holds each pair to
equal outputs). Everywhere else, a kernel's first call loads Numba and compiles it there, as a plain `njit` would.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

_KERNELS: list[Kernel] = []
_LOCK = threading.RLock()
_READY = threading.Event()  # Numba is imported and every kernel is wrapped: all threads use the kernels
_LOADER = threading.local()  # `.active` on the thread running `load_in_background`'s warm-up
# Numba's fallback thread pool (workqueue) must not be entered from two Python threads at once: every call of a
# compiled parallel kernel holds this lock; twins never take it, so they never wait on a kernel compiling under it
_PARALLEL_CALLS = threading.Lock()
_twin_users = 0  # runs between `use_twins_until_loaded` and `stop_using_twins`: while any, twins draw
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
        self._calls = _PARALLEL_CALLS if options.get("parallel") else contextlib.nullcontext()  # held per call
        self.__name__ = loops.__name__
        self.__doc__ = loops.__doc__
        _KERNELS.append(self)

    def twin(self, numpy_version: Callable) -> Callable:
        """Decorator: `numpy_version` takes the kernel's arguments and writes / returns the same values."""
        self.numpy = numpy_version
        return numpy_version

    def __call__(self, *args: Any) -> Any:
        if not _READY.is_set() and not getattr(_LOADER, "active", False):
            if _twin_users and self.numpy is not None:
                return self.numpy(*args)
            load()
        with self._calls:
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
    global _ready_at
    with _LOCK:
        if _READY.is_set():
            return
        for each in _KERNELS:
            each.compiled()
        _ready_at = time.time()
        _READY.set()


def use_twins_until_loaded() -> None:
    """Until `load_in_background` (or `load`) is done, kernels that Numba has not loaded yet run their twins; each
    call is ended by one `stop_using_twins` (runs in threads of one process each hold the twins for their own)."""
    global _twin_users
    with _LOCK:
        _twin_users += 1


def load_in_background(warm_up: Callable[[], None]) -> threading.Thread | None:
    """Start (once) a thread that imports Numba, runs `warm_up` (kernel calls on the argument types to come,
    which compile or load them) and then hands every thread the kernels. None when they are loaded already.

    Should Numba fail there (not importable, or a kernel that does not compile), a warning says so and the twins
    draw on, with the same values, until the runs end; a later run tries again."""
    global _loader_thread
    with _LOCK:
        if _READY.is_set() or _loader_thread is not None:
            return _loader_thread

        def run() -> None:
            global _loader_thread
            _LOADER.active = True
            try:
                warm_up()
                load()
            except Exception as exc:  # noqa: BLE001 - any failure: the twins compute the same values
                logging.getLogger("camstream").warning(
                    "Numba could not load the kernels (%s: %s); their NumPy versions draw instead, more slowly",
                    type(exc).__name__, exc)
                with _LOCK:
                    _loader_thread = None

        _loader_thread = threading.Thread(target=run, name="camstream-kernels", daemon=True)
        _loader_thread.start()
        return _loader_thread


def stop_using_twins(timeout_s: float = 60.0) -> None:
    """End one `use_twins_until_loaded`. The last one waits for a background load to end (a thread importing at
    interpreter exit can crash it), and later calls load Numba where they are made."""
    global _twin_users
    with _LOCK:
        _twin_users = max(0, _twin_users - 1)
        last, loader = _twin_users == 0, _loader_thread
    if last and loader is not None:
        loader.join(timeout_s)


def ready_at() -> float | None:
    """time.time() when the kernels took over from the twins (None: not yet)."""
    return _ready_at
