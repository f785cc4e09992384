"""The fused overlay kernel: upsample → threshold → colormap → alpha blend, in one pass over the frame."""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit, prange

from camstream.kernels.upsample import resize_tables

# Numba's fallback thread pool (workqueue) must not be entered from two Python threads at once.
_PARALLEL_LOCK = threading.Lock()


@njit(cache=True, nogil=True, parallel=True)
def _overlay(frame, cam, threshold, lut, alpha256, y0, y1, wy, x0, x1, wx, out):
    keep = 256 - alpha256
    for y in prange(frame.shape[0]):
        top = cam[y0[y]]
        bottom = cam[y1[y]]
        fy = wy[y]
        for x in range(frame.shape[1]):
            a = top[x0[x]] + (top[x1[x]] - top[x0[x]]) * wx[x]
            b = bottom[x0[x]] + (bottom[x1[x]] - bottom[x0[x]]) * wx[x]
            v = a + (b - a) * fy
            if math.isfinite(v) and v > threshold:
                level = int(min(max(v, 0.0), 1.0) * 255.0 + 0.5)
                for c in range(3):
                    out[y, x, c] = (frame[y, x, c] * keep + lut[level, c] * alpha256 + 128) >> 8
            else:
                for c in range(3):
                    out[y, x, c] = frame[y, x, c]


def overlay(frame: np.ndarray, cam: np.ndarray, threshold: float, lut: np.ndarray, alpha: float = 0.45,
            out: np.ndarray | None = None) -> np.ndarray:
    """Composite `cam` (h, w float in [0, 1]) over `frame` (H, W, 3 uint8) where the upsampled map > threshold.

    out = ((256 - a) · frame + a · lut[round(255 · v)] + 128) >> 8, a = round(256 · alpha); elsewhere
    out = frame. `out` may be `frame` itself.
    """
    if out is None:
        out = np.empty_like(frame)
    height, width = frame.shape[:2]
    if cam.size == 0:
        np.copyto(out, frame)
        return out
    y0, y1, wy = resize_tables(cam.shape[0], height)
    x0, x1, wx = resize_tables(cam.shape[1], width)
    alpha256 = int(round(min(max(alpha, 0.0), 1.0) * 256))
    cam = np.ascontiguousarray(cam, dtype=np.float32)
    with _PARALLEL_LOCK:
        _overlay(frame, cam, float(threshold), lut, alpha256, y0, y1, wy, x0, x1, wx, out)
    return out
