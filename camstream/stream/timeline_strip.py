"""The HUD's timeline strip: a clip model's step importance drawn along the bottom of the frame."""

from __future__ import annotations

import cv2
import numpy as np


def timeline_box(canvas_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the strip: along the bottom edge, 1/24 of the height (≥ 8 px)."""
    height, width = canvas_shape[:2]
    strip = max(8, height // 24)
    return height - strip, height, 0, width


def draw_timeline(canvas: np.ndarray, importance: np.ndarray, threshold: float, lut: np.ndarray) -> None:
    """One cell per time step, oldest on the left, coloured by `lut` (256×3 BGR) at its importance and
    parted from the next by a black line; a cell the threshold keeps (importance > threshold) gets a white
    frame."""
    top, bottom, left, right = timeline_box(canvas.shape)
    steps = len(importance)
    edges = np.linspace(left, right, steps + 1).round().astype(int)
    for step, value in enumerate(importance):
        colour = lut[round(float(np.clip(value, 0.0, 1.0)) * 255)]
        x0, x1 = edges[step], edges[step + 1] - 1
        canvas[top:bottom, x0:x1 + 1] = colour
        if step:
            canvas[top:bottom, x0] = 0
        if value > threshold:
            cv2.rectangle(canvas, (int(x0), top), (int(x1), bottom - 1), (255, 255, 255), 1)
