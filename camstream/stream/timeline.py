"""Temporal explanations in the stream: a clip model over each stream's last N frames, which of those
steps decided its class, and the HUD strip that shows it.

The inference stage hands every explained batch to `ClipTracker`; it keeps each stream's last N frame
features (the clip model's encoder runs once per frame) and explains the newest window of every stream in
the batch. The render stage draws the result with `draw_timeline`.
"""

from __future__ import annotations

import contextlib
from collections import deque

import cv2
import numpy as np
import torch
from torch import nn

from camstream.errors import CamstreamError, ModelError
from camstream.explain.registry import REGISTRY
from camstream.explain.result import Explanation, ModelKind, evaluation_mode
from camstream.explain.temporal import require_clip_model

STEP_METHODS = REGISTRY[ModelKind.TEMPORAL]


class ClipTracker:
    """Per stream, the features of its last `steps` explained frames, and their step importance."""

    def __init__(self, model: nn.Module, steps: int, method: str, streams: int) -> None:
        if steps < 2:
            raise CamstreamError("--clip-steps must be at least 2")
        if method not in STEP_METHODS:
            raise CamstreamError(f"unknown clip method '{method}' (choose from {', '.join(STEP_METHODS)})")
        require_clip_model(model)
        self._restore = contextlib.ExitStack()  # the model goes back to its own mode on `close`
        self.model = self._restore.enter_context(evaluation_mode(model))
        self.steps = steps
        self.method = STEP_METHODS[method]()
        self.windows: list[deque[torch.Tensor]] = [deque(maxlen=steps) for _ in range(streams)]
        self.explained = 0
        self.latest: dict[int, Explanation] = {}  # per stream, its newest reading

    def __call__(self, inputs: torch.Tensor, streams: list[int]) -> dict[int, Explanation]:
        """Add the frames `inputs` (B, C, H, W; frame b from stream `streams[b]`) to their windows and
        explain the newest window of each stream present."""
        with torch.inference_mode():
            try:
                features = self.model.features(inputs[:, None])[:, 0]
            except Exception as exc:
                raise ModelError(f"the clip model failed on frames {tuple(inputs.shape)}: {exc}") from exc
        for index, stream in enumerate(streams):
            self.windows[stream].append(features[index])
        readings = {}
        for stream in dict.fromkeys(streams):
            window = torch.stack(tuple(self.windows[stream]))[None]
            readings[stream] = self.method.explain_features(self.model, window)
            self.explained += 1
        self.latest.update(readings)
        return readings

    def close(self) -> None:
        """Give the clip model back the mode it came in."""
        self._restore.close()


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
