"""The kernel calls a stream makes, on tiny arrays of the same types (Numba compiles per dtype, layout and
read-only flag): `camstream run` hands `warm_up` to `jit.load_in_background`, so every kernel the render path
calls is compiled, or loaded from Numba's cache, before the NumPy twins hand over."""

from __future__ import annotations

import numpy as np

from camstream.kernels.colormap import colormap_lut
from camstream.kernels.masking import KeptRegions
from camstream.kernels.overlay import overlay
from camstream.kernels.threshold import threshold_value, thresholded
from camstream.kernels.upsample import upsample_bilinear
from camstream.threshold_spec import ThresholdSpec


def warm_up() -> None:
    """Call each kernel as the stream does: a new canvas and in place, a letterboxed window of a frame, the
    painter's proxy percentile (with and without scratch), the dynamic threshold, a kept map, the faithful batch."""
    frame = np.zeros((6, 8, 3), np.uint8)
    cam = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    lut = colormap_lut("jet")
    overlay(frame, cam, 0.5, lut)
    overlay(frame, cam, 0.5, lut, out=frame)
    window = frame[1:5, 2:7]
    overlay(window, cam, 0.5, lut, out=window)
    proxy = upsample_bilinear(cam, (8, 8), np.empty((8, 8), np.float32))
    threshold_value(proxy, ThresholdSpec(keep_percent=20.0), np.empty(proxy.size, np.float64))
    threshold_value(cam, ThresholdSpec(keep_percent=20.0))
    threshold_value(cam, ThresholdSpec(dynamic=True))
    thresholded(cam, ThresholdSpec(keep_percent=20.0))
    KeptRegions((10.0, 50.0))(frame, cam)
