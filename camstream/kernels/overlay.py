"""The fused overlay kernel: upsample → threshold → colormap → alpha blend, in one pass over the frame."""

from __future__ import annotations

import threading

import numpy as np

from camstream.kernels.jit import kernel
from camstream.kernels.upsample import resize_tables

prange = range  # numba.prange once the kernel compiles (`camstream.kernels.jit`)


@kernel(nogil=True, parallel=True)
def _overlay(frame, cam, threshold, table, keep, y0, y1, wy, x0, x1, wx, rows, out, in_place):
    height, width = frame.shape[0], frame.shape[1]
    cam_width = cam.shape[1]
    # the map interpolated vertically once per output row: each pixel then needs one horizontal lerp
    for y in prange(height):
        for j in range(cam_width):
            top = cam[y0[y], j]
            rows[y, j] = top + (cam[y1[y], j] - top) * wy[y]
    for y in prange(height):
        row = rows[y]
        for x in range(width):
            left = row[x0[x]]
            v = left + (row[x1[x]] - left) * wx[x]
            if v > threshold:
                level = int(min(max(v, 0.0), 1.0) * 255.0 + 0.5)
                for c in range(3):
                    out[y, x, c] = (frame[y, x, c] * keep + table[level, c]) >> 8
            elif not in_place:
                for c in range(3):
                    out[y, x, c] = frame[y, x, c]


@_overlay.twin
def _overlay_numpy(frame, cam, threshold, table, keep, y0, y1, wy, x0, x1, wx, rows, out, in_place):
    top = cam[y0]
    with np.errstate(invalid="ignore", over="ignore"):  # values near float32's largest: the same values, no warning
        rows[...] = top + (cam[y1] - top) * wy[:, None]
        left = rows[:, x0]
        values = left + (rows[:, x1] - left) * wx
    shown = values > threshold
    levels = (np.clip(values[shown].astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.int64)
    blended = (frame[shown].astype(np.int64) * keep + table[levels]) >> 8
    if not in_place:
        out[...] = frame
    out[shown] = blended


_tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _blend_table(lut: np.ndarray, alpha256: int) -> np.ndarray:
    """lut · a + 128 as int32: the colour's share of the blend, rounding included; made once per read-only
    LUT (colormap_lut's are cached) and alpha, not once per frame."""
    key = (id(lut), alpha256)
    cached = _tables.get(key)
    if cached is not None and cached[0] is lut and not lut.flags.writeable:
        return cached[1]
    table = np.ascontiguousarray(lut, np.uint8).reshape(256, 3).astype(np.int32) * alpha256 + 128
    if not lut.flags.writeable:
        if len(_tables) >= 16:
            _tables.clear()
        _tables[key] = (lut, table)  # holding the LUT keeps its id from being reused
    return table


_rows_scratch = threading.local()


def _rows(height: int, cam_width: int) -> np.ndarray:
    scratch = getattr(_rows_scratch, "array", None)
    if scratch is None or scratch.shape != (height, cam_width):
        scratch = _rows_scratch.array = np.empty((height, cam_width), np.float32)
    return scratch


def overlay(frame: np.ndarray, cam: np.ndarray, threshold: float, lut: np.ndarray, alpha: float = 0.45,
            out: np.ndarray | None = None) -> np.ndarray:
    """Composite `cam` (h, w, values in [0, 1]) over `frame` (H, W, 3 uint8) where the upsampled map > threshold.

    out = ((256 - a) · frame + a · lut[round(255 · v)] + 128) >> 8 with a = round(256 · alpha); elsewhere
    out = frame. `out` may be `frame` itself (then pixels under the threshold are not touched at all).
    Non-finite map values count as 0.
    """
    if out is None:
        out = np.empty_like(frame)
    height, width = frame.shape[:2]
    if cam.size == 0 or height == 0 or width == 0:
        if out is not frame:
            np.copyto(out, frame)
        return out
    y0, y1, wy = resize_tables(cam.shape[0], height)
    x0, x1, wx = resize_tables(cam.shape[1], width)
    alpha256 = int(round(min(max(alpha, 0.0), 1.0) * 256))
    table = _blend_table(lut, alpha256)
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    _overlay(frame, cam, np.float32(threshold), table, 256 - alpha256, y0, y1, wy, x0, x1, wx,
             _rows(height, cam.shape[1]), out, out is frame)  # a parallel kernel: `jit` serialises its calls
    return out
