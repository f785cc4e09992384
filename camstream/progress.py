"""What a command is doing, said on stderr whether or not it is a terminal.

One plain line per step (`camstream: loading efficientnet_lite0 …`), flushed at once, through the standard
`logging` module (logger "camstream"); a step that takes long says so again every 5 s (`… 5 s`, `… 10 s`), so a
pipe or a log never goes quiet while a model loads or exports. `-q/--quiet` keeps stderr to results, warnings
and errors; `-v/--verbose` adds debug lines (dropped clients, retries). Errors stay one line: progress lines
come before it and say only what was being done (`is_progress_line`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from camstream.redaction import redact

LOGGER = logging.getLogger("camstream")
HEARTBEAT_S = 5.0  # a step that takes longer is said again this often
ELLIPSIS = "…"


class _CurrentStderr(logging.Handler):
    """Writes each record to whatever `sys.stderr` is when it is emitted, flushed."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError, ValueError):  # stderr closed under us: never worth an error
            print(redact(self.format(record)), file=sys.stderr, flush=True)


class _OneLine(_CurrentStderr):
    """A record of another library as one `camstream: debug: …` line: its message and the exception's name
    and text, never the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[1] if record.exc_info else None
        cause = f" ({type(error).__name__}: {error})" if error is not None else ""
        return f"camstream: debug: {record.name}: {record.getMessage()}{cause}"


def configure(quiet: bool = False, verbose: bool = False) -> None:
    """Progress at INFO on stderr as `camstream: …` lines; WARNING and above only with `quiet`; DEBUG with
    `verbose`. Idempotent: a second call only sets the level."""
    if not any(isinstance(handler, _CurrentStderr) for handler in LOGGER.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("camstream: %(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.propagate = False
        # the dashboard's server: a client that vanishes mid-response is aiohttp's "Error handling request" with a
        # traceback, through Python's last-resort handler. It is no fault of the run: said only with --verbose,
        # as one line, in camstream's own format
        served = logging.getLogger("aiohttp")
        served.addHandler(_OneLine())
        served.propagate = False
    LOGGER.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logging.getLogger("aiohttp").setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)


def say(message: str) -> None:
    """One progress line (INFO)."""
    LOGGER.info(message)


@dataclass
class Tally:
    """How far a counted step has come, as its beats say it: `64/200 images`."""

    total: int
    unit: str
    done: int = 0

    def __str__(self) -> str:
        return f"{self.done}/{self.total} {self.unit}"


@contextlib.contextmanager
def step(what: str, every_s: float = HEARTBEAT_S, tell: Callable[[str], None] = say,
         tally: Tally | None = None) -> Iterator[None]:
    """Say `what …` now and `what … N s` every `every_s` seconds until the block ends, through `tell` (a
    progress call such as `timed_progress()`'s; `say` by default), each beat ending with the `tally` where
    given (`… 10 s (64/200 images)`)."""
    tell(f"{what} {ELLIPSIS}")
    began = time.perf_counter()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            count = f" ({tally})" if tally is not None else ""
            tell(f"{what} {ELLIPSIS} {time.perf_counter() - began:.0f} s{count}")

    beating = threading.Thread(target=beat, name="camstream-progress", daemon=True)
    if LOGGER.isEnabledFor(logging.INFO):
        beating.start()
    try:
        yield
    finally:
        done.set()
        if beating.is_alive():
            beating.join()


def timed_progress() -> Callable[[str], None]:
    """A progress call that says each message with the seconds since it was made (`[  12.3 s] message`)."""
    began = time.perf_counter()
    return lambda message: say(f"[{time.perf_counter() - began:6.1f} s] {message}")


def is_progress_line(line: str) -> bool:
    """Whether `line` is one of the progress lines `step` and `say` write (what a test of a one-line error
    lets stand before the error)."""
    if not line.startswith("camstream: ") or line.startswith(("camstream: error:", "camstream: warning:")):
        return False
    text = line.removeprefix("camstream: ")
    beat = text.rsplit(f"{ELLIPSIS} ", 1)[-1].split(" (", 1)[0]  # "12 s" or "12 s (64/200 images)"
    return (text.endswith(ELLIPSIS) or beat.removesuffix(" s").isdigit()
            or text.startswith("ready in ") or (text.startswith("[") and " s] " in text))
