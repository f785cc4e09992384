"""Run in a child process: plain EfficientNet-Lite0 inference ms/frame, with or without the malloc tuning.

The tuning is process-wide and cannot be undone, so the bench compares two fresh processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def probe(batch: int = 4, rounds: int = 15) -> float:
    import torch

    from camstream.bench.pipeline import inference_ceiling_fps
    from camstream.runtime import tune_glibc_malloc
    from camstream.stream.config import demo_clip

    tune_glibc_malloc()
    del torch
    return 1e3 / inference_ceiling_fps("efficientnet_lite0", batch, demo_clip(), rounds, frozen=False)["eager"]


def compare(batch: int = 4, rounds: int = 15) -> dict:
    """ms/frame of plain inference in a tuned and an untuned child process, and the speedup."""
    results = {}
    for label, value in (("untuned", "0"), ("tuned", "1")):
        env = {**os.environ, "CAMSTREAM_MALLOC_TUNING": value}
        child = subprocess.run([sys.executable, "-m", "camstream.bench.malloc_probe", str(batch), str(rounds)],
                               capture_output=True, text=True, env=env)
        if child.returncode != 0:
            return {"error": child.stderr.strip().splitlines()[-1] if child.stderr.strip() else "probe failed"}
        results[f"{label}_ms"] = round(json.loads(child.stdout.strip().splitlines()[-1])["plain_ms"], 3)
    results["speedup"] = round(results["untuned_ms"] / results["tuned_ms"], 3)
    results["batch"] = batch
    return results


if __name__ == "__main__":
    batch_arg, rounds_arg = (int(a) for a in sys.argv[1:3])
    print(json.dumps({"plain_ms": probe(batch_arg, rounds_arg)}))
