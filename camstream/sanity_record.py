"""What `camstream sanity` found, kept between runs, so that `run` and `explain` can say once that the chosen
method failed Adebayo et al.'s checks on the chosen model (`camstream.eval.sanity`). Torch-free: a JSON file
in the cache folder (`$CAMSTREAM_CACHE`, else ~/.cache/camstream), keyed by the model's name, or by a model
file's path, size and modification time, and by the weights file's likewise."""

from __future__ import annotations

import contextlib
import json
import os

from camstream.storage import cache_folder, write_json_atomic


def _path() -> str:
    return os.path.join(cache_folder(), "sanity.json")


def model_key(model: str, weights: str | None = None) -> str:
    """The model as the record names it: its name, or a file's absolute path with its size and mtime; with the
    weights file named the same way after it."""
    return "|".join(_file_key(name) for name in (model, weights) if name)


def _file_key(name: str) -> str:
    if os.path.isfile(name):
        return f"{os.path.abspath(name)}|{os.path.getsize(name)}|{os.path.getmtime(name):.0f}"
    return name


def _read() -> dict:
    try:
        with open(_path(), encoding="utf-8") as handle:
            found = json.load(handle)
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def record_verdicts(model: str, results: dict, weights: str | None = None) -> None:
    """Keep `sanity_checks`' per-method results for `model` with `weights` (a failed write only loses the
    warning)."""
    records = _read()
    records[model_key(model, weights)] = {
        method: {"passed": row["passed"], "class": row["class_sensitivity_spearman"],
                 "randomised": row["randomisation_spearman"]}
        for method, row in results["methods"].items()}
    with contextlib.suppress(OSError):
        write_json_atomic(_path(), records, indent=None)


def failed_sanity(model: str, method: str, weights: str | None = None) -> str | None:
    """One sentence when `camstream sanity` found `method` failing on `model` with `weights`, else None (passed,
    or not run)."""
    row = _read().get(model_key(model, weights), {}).get(method)
    if not row or row.get("passed", True):
        return None
    return (f"{method} failed the sanity checks on {os.path.basename(model)} (Spearman to another class's map "
            f"{row['class']:+.2f}, to a randomised model's {row['randomised']:+.2f}; pass below 0.5): its map "
            "barely depends on the class or the model, so read it as where the network looks, not why it decides")
