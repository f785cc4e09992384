"""Timing helpers: interleaved rounds so that drift on a shared machine hits every contender alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(contenders: dict[str, Callable[[], object]], rounds: int = 20, warmup: int = 3,
                        on_round: Callable[[int], None] | None = None) -> dict[str, float]:
    """Median seconds per call of each contender, timed round-robin (A, B, C, A, B, C, …) after warm-up."""
    samples = interleaved_samples(contenders, rounds, warmup, on_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def interleaved_samples(contenders: dict[str, Callable[[], object]], rounds: int = 20, warmup: int = 3,
                        on_round: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Seconds of every call of each contender, timed round-robin after warm-up (for medians and spreads)."""
    for _ in range(warmup):
        for run in contenders.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(rounds):
        for name, run in contenders.items():
            began = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - began)
        if on_round is not None:
            on_round(index)
    return samples
