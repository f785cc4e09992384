"""The faithful threshold's masked batch: a frame kept only where its map is in the top P %, for several P at once,
written into a reused buffer (`camstream.explain.faithful` scores it in one batched forward).

The map (h, w) is upsampled bilinearly to the frame's (H, W); for each P its threshold is the map's
(100 − P)-th percentile there, and a pixel is kept where the map is above it (as `simplify` keeps it); the rest is
set to 0 — black, the baseline deletion uses. Nothing is allocated per call once the buffers exist.
"""

from __future__ import annotations

import math

import numpy as np

from camstream.kernels.jit import kernel
from camstream.kernels.threshold import percentile
from camstream.kernels.upsample import upsample_bilinear


@kernel(nogil=True)
def _keep_above(frame, upsampled, thresholds, out):
    height, width, channels = frame.shape
    for k in range(thresholds.size):
        threshold = thresholds[k]
        for i in range(height):
            for j in range(width):
                value = upsampled[i, j]
                keep = math.isfinite(value) and value > threshold
                for c in range(channels):
                    out[k, i, j, c] = frame[i, j, c] if keep else 0


@_keep_above.twin
def _keep_above_numpy(frame, upsampled, thresholds, out):
    finite = np.isfinite(upsampled)
    values = upsampled.astype(np.float64)  # compared in float64, as the kernel does, under NumPy 1.x's rules too
    for k in range(thresholds.size):
        keep = finite & (values > thresholds[k])
        out[k] = np.where(keep[..., None], frame, 0)


class KeptRegions:
    """Reused buffers for `frame` shapes (H, W, C) of one dtype and `keep_percents` (K,): `__call__` fills and
    returns the (K, H, W, C) batch, and `thresholds` holds the K map values it cut at."""

    def __init__(self, keep_percents: tuple[float, ...]) -> None:
        self.keep_percents = keep_percents
        self.thresholds = np.empty(len(keep_percents), np.float64)
        self._out: np.ndarray | None = None
        self._upsampled: np.ndarray | None = None
        self._scratch: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, cam: np.ndarray) -> np.ndarray:
        """`frame` (H, W, C) kept where `cam` (h, w) is in its top P %, for each P of `keep_percents`."""
        height, width = frame.shape[:2]
        shape = (len(self.keep_percents), *frame.shape)
        if self._out is None or self._out.shape != shape or self._out.dtype != frame.dtype:
            self._out = np.empty(shape, frame.dtype)
            self._upsampled = np.empty((height, width), np.float32)
            self._scratch = np.empty(height * width, np.float64)
        upsampled = upsample_bilinear(np.ascontiguousarray(cam, np.float32), (height, width), self._upsampled)
        for index, keep in enumerate(self.keep_percents):
            self.thresholds[index] = -math.inf if keep >= 100 else percentile(upsampled, 100.0 - keep,
                                                                              self._scratch)
        _keep_above(np.ascontiguousarray(frame), upsampled, self.thresholds, self._out)
        return self._out
