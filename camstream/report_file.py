"""Writing a JSON report so that a reader never sees half of one: the run, fleet, eval and bench all use it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def write_json_atomic(path: str, data: Any, default: Callable[[Any], Any] | None = None) -> str:
    """Write `data` as indented JSON to `path` through a temporary file in the same folder and an atomic rename.

    The folder is made when missing; a failed write removes the temporary file and leaves any older `path` whole.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = f"{path}.{os.getpid()}.tmp"
    try:
        with open(partial, "w") as handle:
            json.dump(data, handle, indent=2, default=default)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return path
