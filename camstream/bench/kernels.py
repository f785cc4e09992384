"""Kernel speed: the fused overlay vs the OpenCV chain, percentile selection vs np.percentile."""

from __future__ import annotations

import math

import cv2
import numpy as np

from camstream.bench.timing import interleaved_medians
from camstream.kernels import colormap_lut, overlay, percentile
from camstream.kernels.reference import overlay_reference

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}


def bench_kernels(rounds: int = 30) -> dict:
    """ms per call at 720p and 1080p, and the speedups."""
    rng = np.random.default_rng(0)
    cam = rng.random((7, 7)).astype(np.float32)
    lut = colormap_lut("jet")
    result: dict = {"overlay": {}, "percentile": {}}
    for label, size in SIZES.items():
        frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        out = np.empty_like(frame)
        medians = interleaved_medians({
            "fused": lambda frame=frame, out=out: overlay(frame, cam, 0.4, lut, 0.45, out),
            "opencv_chain": lambda frame=frame: overlay_reference(frame, cam, 0.4, cv2.COLORMAP_JET, 0.45),
        }, rounds=rounds)
        result["overlay"][label] = {"fused_ms": round(medians["fused"] * 1e3, 3),
                                    "opencv_chain_ms": round(medians["opencv_chain"] * 1e3, 3),
                                    "speedup": round(medians["opencv_chain"] / medians["fused"], 3)}
    for side in (7, 64, 224):
        values = rng.random((side, side)).astype(np.float32)
        scratch = np.empty(values.size, np.float64)
        medians = interleaved_medians({"selection": lambda v=values, s=scratch: percentile(v, 90.0, s),
                                       "np_percentile": lambda v=values: np.percentile(v, 90.0)}, rounds=rounds)
        result["percentile"][f"{side}x{side}"] = {
            "selection_us": round(medians["selection"] * 1e6, 2),
            "np_percentile_us": round(medians["np_percentile"] * 1e6, 2),
            "speedup": round(medians["np_percentile"] / medians["selection"], 3) if medians["selection"] else math.nan}
    return result
