"""`overlay(image, result)`: an explanation drawn over its picture by the stream's own fused kernel, for the
Python API (pytorch-grad-cam's `show_cam_on_image`, torchcam's `overlay_mask`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from camstream.explain.result import Explanation
from camstream.kernels import colormap_lut
from camstream.kernels import overlay as overlay_kernel


@lru_cache(maxsize=8)
def _rgb_lut(colormap: str) -> np.ndarray:
    lut = np.ascontiguousarray(colormap_lut(colormap)[:, ::-1])  # the kernels' tables are BGR, as OpenCV's
    lut.setflags(write=False)
    return lut


def overlay(image: Any, result: Explanation, index: int = 0, alpha: float = 0.45, colormap: str = "jet",
            threshold: float | None = None) -> np.ndarray:
    """`result`'s map `index` blended over `image` (H×W×3 uint8 RGB NumPy array or PIL image; returns an RGB
    array of the same size): upsampled, coloured by `colormap` and drawn with opacity `alpha` where the map is
    above `threshold` (default: the result's own threshold where it was thresholded, else everywhere).

    out = ((256 − a) · image + a · colormap(v) + 128) >> 8 with a = round(256 · alpha), as the stream draws.
    """
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image))
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"overlay(): image must be H×W×3 uint8 RGB, got {pixels.shape} {pixels.dtype}")
    cam = np.ascontiguousarray(result.to_numpy().maps[index], dtype=np.float32)
    if threshold is None:
        threshold = result.thresholds[index] if result.thresholds is not None else -np.inf
    return overlay_kernel(pixels, cam, float(threshold), _rgb_lut(colormap), alpha)
