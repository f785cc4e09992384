"""Colormap lookup tables: 256 BGR colours, index = round(255 · value)."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from camstream.errors import CamstreamError

COLORMAPS = {"jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO,
             "viridis": cv2.COLORMAP_VIRIDIS, "hot": cv2.COLORMAP_HOT}


@cache
def colormap_lut(name: str = "jet") -> np.ndarray:
    """(256, 3) uint8 BGR table of OpenCV's colormap `name`; read-only."""
    if name not in COLORMAPS:
        raise CamstreamError(f"unknown colormap '{name}' (choose from {', '.join(COLORMAPS)})")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    lut = np.ascontiguousarray(cv2.applyColorMap(ramp, COLORMAPS[name]).reshape(256, 3))
    lut.setflags(write=False)
    return lut
