"""Timing helpers: interleaved rounds so that drift on a shared machine hits every contender alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


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


def spread(values: list[float]) -> dict[str, float]:
    """Median and interquartile range of `values` (seconds) in ms."""
    quartiles = np.percentile(np.asarray(values) * 1e3, [25, 50, 75])
    return {"median": round(float(quartiles[1]), 2), "q1": round(float(quartiles[0]), 2),
            "q3": round(float(quartiles[2]), 2)}


def ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """The ratio of medians, and the spread of the per-round ratios (rounds are interleaved, so round i of each
    contender ran side by side)."""
    per_round = [a / b for a, b in zip(numerator, denominator, strict=True)]
    low, high = np.percentile(per_round, [25, 75])
    return {"median": round(statistics.median(numerator) / statistics.median(denominator), 3),
            "per_round_q1": round(float(low), 3), "per_round_q3": round(float(high), 3)}
