"""Bilinear upsampling of a small CAM to frame size, with OpenCV's INTER_LINEAR pixel-centre convention."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from camstream.kernels.jit import kernel


@lru_cache(maxsize=64)
def resize_tables(src_size: int, dst_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: left source index, right source index and the right weight.

    x_src = (x + 0.5) · src / dst - 0.5, clamped to the border as cv2.resize does.
    """
    position = (np.arange(dst_size, dtype=np.float64) + 0.5) * (src_size / dst_size) - 0.5
    left = np.floor(position).astype(np.int64)
    weight = (position - left).astype(np.float32)
    weight[left < 0] = 0.0
    left = np.clip(left, 0, src_size - 1)
    weight[left >= src_size - 1] = 0.0
    right = np.minimum(left + 1, src_size - 1)
    for table in (left, right, weight):
        table.setflags(write=False)
    return left, right, weight


@kernel(nogil=True)
def _upsample(src, y0, y1, wy, x0, x1, wx, out):
    for y in range(out.shape[0]):
        top = src[y0[y]]
        bottom = src[y1[y]]
        fy = wy[y]
        for x in range(out.shape[1]):
            a = top[x0[x]] + (top[x1[x]] - top[x0[x]]) * wx[x]
            b = bottom[x0[x]] + (bottom[x1[x]] - bottom[x0[x]]) * wx[x]
            out[y, x] = a + (b - a) * fy


@_upsample.twin
def _upsample_numpy(src, y0, y1, wy, x0, x1, wx, out):
    top, bottom = src[y0], src[y1]
    with np.errstate(invalid="ignore", over="ignore"):  # a map with inf or NaN: the same values, no warning
        a = top[:, x0] + (top[:, x1] - top[:, x0]) * wx
        b = bottom[:, x0] + (bottom[:, x1] - bottom[:, x0]) * wx
        out[...] = a + (b - a) * wy[:, None]


def upsample_bilinear(src: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Resize the 2-D float32 map `src` to `size` = (height, width), like cv2.resize(INTER_LINEAR)."""
    height, width = size
    if out is None:
        out = np.empty((height, width), dtype=np.float32)
    if src.size == 0 or out.size == 0:
        out.fill(0.0)
        return out
    y0, y1, wy = resize_tables(src.shape[0], height)
    x0, x1, wx = resize_tables(src.shape[1], width)
    _upsample(np.ascontiguousarray(src, dtype=np.float32), y0, y1, wy, x0, x1, wx, out)
    return out
