"""Model input: uint8 RGB frames at the model's size → a preallocated, normalised, channels-last batch."""

from __future__ import annotations

import numpy as np
import torch

from camstream.models import ModelSpec


class Preprocessor:
    """Holds one (max_batch, 3, H, W) float32 channels-last tensor and fills it in place.

    x = (pixel / 255 - mean) / std, done as one fused multiply-add per channel.
    """

    def __init__(self, spec: ModelSpec, max_batch: int) -> None:
        height, width = spec.input_size
        self.size = (height, width)
        self.batch = torch.empty(max_batch, 3, height, width).to(memory_format=torch.channels_last)
        self._nhwc = self.batch.permute(0, 2, 3, 1)  # a view: channels-last storage seen as NHWC
        std = torch.tensor(spec.std, dtype=torch.float32)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -torch.tensor(spec.mean, dtype=torch.float32) / std

    def __call__(self, frames: list[np.ndarray]) -> torch.Tensor:
        """Normalise `frames` (each H×W×3 uint8 RGB at the model's size) into the batch; return its view."""
        count = len(frames)
        if count > self.batch.shape[0]:
            raise ValueError(f"{count} frames exceed the preallocated batch of {self.batch.shape[0]}")
        with torch.inference_mode(False), torch.no_grad():
            for index, frame in enumerate(frames):
                self._nhwc[index].copy_(torch.from_numpy(frame))
            view = self._nhwc[:count]
            view.mul_(self._scale).add_(self._shift)
        return self.batch[:count]
