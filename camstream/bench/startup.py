"""Start-up: how long `camstream --help` takes, and the time to the first frame out of `camstream run` (process
start → first frame at the sinks, as report.json's `time_to_first_frame_s`) on torch with the frozen-graph
cache cold and warm, and on ONNX Runtime with its exported graph cold and warm. Each in a fresh process."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable


def _help_s() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "camstream", "run", "--help"], capture_output=True, check=True)
    return time.perf_counter() - began


def _first_frame_s(cache: str, out: str, *options: str) -> float:
    subprocess.run([sys.executable, "-m", "camstream", "run", "--sink", "null", "--max-frames", "8", "--quiet",
                    "--out", out, *options], capture_output=True, check=True,
                   env={**os.environ, "CAMSTREAM_CACHE": cache})
    with open(os.path.join(out, "report.json"), encoding="utf-8") as handle:
        return float(json.load(handle)["streams"][0]["time_to_first_frame_s"])


def _spread(values: list[float]) -> dict:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2), "runs": len(values)}


def bench_startup(rounds: int = 2, backends: tuple[str, ...] = ("torch", "onnxruntime"),
                  progress: Callable[[str], None] = print) -> dict:
    """`--help` and first-frame times, each `rounds` times (min / median / max), in seconds."""
    progress("start-up: --help and time to first frame, cold and warm caches")
    results = {"help_s": _spread([_help_s() for _ in range(rounds)])}
    for backend in backends:
        cold, warm = [], []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as cache:
                out = os.path.join(cache, "out")
                cold.append(_first_frame_s(cache, out, "--backend", backend))
                warm.append(_first_frame_s(cache, out, "--backend", backend))
        results[backend] = {"cold_s": _spread(cold), "warm_s": _spread(warm)}
    return results


def markdown(results: dict) -> list[str]:
    """The start-up table of bench.md."""
    lines = ["| what | min | median | max |", "|---|---|---|---|"]
    help_s = results["help_s"]
    lines.append(f"| `camstream run --help` | {help_s['min']} s | {help_s['median']} s | {help_s['max']} s |")
    for backend, figures in results.items():
        if backend == "help_s":
            continue
        for cache in ("cold", "warm"):
            row = figures[f"{cache}_s"]
            lines.append(f"| first frame, {backend}, cache {cache} | {row['min']} s | {row['median']} s | "
                         f"{row['max']} s |")
    return lines
