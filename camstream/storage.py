"""Where camstream keeps files, and how it writes them so that no reader ever sees half of one.

`cache_folder()` holds what is kept between runs (exported graphs, frozen graphs, sanity verdicts);
`written_atomically(path)` is the one way a file is written whole: through a temporary file in the same folder
and an atomic rename (`os.replace`), so a crash, a full disk or two processes at once leave either the old file
or the new one. Torch-free and dependency-free: every floor of the package may import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from camstream.errors import InputError


def cache_folder() -> str:
    """Where camstream keeps things between runs: $CAMSTREAM_CACHE, else $XDG_CACHE_HOME/camstream, else
    ~/.cache/camstream."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("CAMSTREAM_CACHE") or os.path.join(base, "camstream")


@contextlib.contextmanager
def written_atomically(path: str) -> Iterator[str]:
    """A temporary path beside `path` (named by this process, so two writers never share one) to write to; when
    the block ends normally it replaces `path` in one rename, when it raises it is removed and any older `path`
    stays whole. The folder is made when missing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            with contextlib.suppress(OSError):
                os.remove(partial)


def write_json_atomic(path: str, data: Any, default: Callable[[Any], Any] | None = None, indent: int | None = 2
                      ) -> str:
    """Write `data` as JSON to `path` whole (`written_atomically`); returns `path`."""
    with written_atomically(path) as partial, open(partial, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=indent, default=default)
    return path


def check_writable_folder(folder: str) -> None:
    """An InputError when nothing could be written into `folder`: a file stands at it (or above it), or where it is
    (or would be made) cannot be written (a read-only filesystem, no permission). Tried by making and removing a
    folder there (nothing is left), not read from file modes, which root ignores."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        named = "it" if existing == os.path.abspath(folder) else existing
        raise InputError(f"cannot write into {folder}: {named} is a file, not a folder (give another --out)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".camstream-check-", dir=existing))
    except OSError as exc:
        raise InputError(f"cannot write into {folder}: {exc.strerror or exc} (give another --out)") from None
