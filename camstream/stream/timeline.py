"""Temporal explanations in the stream: a clip model over each stream's last N frames, and which of those
steps decided its class.

The inference stage hands every explained batch to `ClipTracker`; it keeps each stream's last N frame
features (the clip model's encoder runs once per frame) and explains the newest window of every stream in
the batch. The render stage draws the result with `timeline_strip.draw_timeline`.
"""

from __future__ import annotations

import contextlib
from collections import deque

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
