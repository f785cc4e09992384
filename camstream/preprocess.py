"""Model input: a BGR image → uint8 RGB at the model's size (`resize_to_rgb`) → normalised (`Normaliser` for
[0, 1] tensors, `Preprocessor` for a preallocated, channels-last batch of uint8 frames). The one home of both."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported by the classes that use it: resize_to_rgb serves torch-free runs too
    import torch

    from camstream.models import ModelSpec


def resize_to_rgb(image_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image_bgr` (H×W×3 uint8) resized by area to `size` (height, width) and turned RGB, as models take it."""
    height, width = size
    return cv2.cvtColor(cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


class Normaliser:
    """x = (pixels − mean) / std for (B, 3, H, W) pixels in [0, 1], with the model's mean and std."""

    def __init__(self, spec: ModelSpec) -> None:
        import torch

        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std


class Preprocessor:
    """Holds one (max_batch, 3, H, W) float32 channels-last tensor on the model's device and fills it in place.

    x = (pixel / 255 - mean) / std, done as one fused multiply-add per channel. On a GPU the uint8 frames are
    gathered in one pinned host buffer and go to the device in one copy per batch.
    """

    def __init__(self, spec: ModelSpec, max_batch: int, device: str | torch.device = "cpu") -> None:
        import torch

        height, width = spec.input_size
        self.size = (height, width)
        self.device = torch.device(device)
        self.batch = torch.empty(max_batch, 3, height, width, device=self.device).to(
            memory_format=torch.channels_last)
        self._nhwc = self.batch.permute(0, 2, 3, 1)  # a view: channels-last storage seen as NHWC
        self._staging = None
        if self.device.type != "cpu":
            self._staging = torch.empty(max_batch, height, width, 3, dtype=torch.uint8, pin_memory=True)
        std = torch.tensor(spec.std, dtype=torch.float32, device=self.device)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -torch.tensor(spec.mean, dtype=torch.float32, device=self.device) / std

    def __call__(self, frames: list[np.ndarray]) -> torch.Tensor:
        """Normalise `frames` (each H×W×3 uint8 RGB at the model's size) into the batch; return its view."""
        import torch

        count = len(frames)
        if count > self.batch.shape[0]:
            raise ValueError(f"{count} frames exceed the preallocated batch of {self.batch.shape[0]}")
        with torch.inference_mode(False), torch.no_grad():
            filled = self._nhwc if self._staging is None else self._staging
            for index, frame in enumerate(frames):
                filled[index].copy_(torch.from_numpy(frame))
            if self._staging is not None:  # one host-to-device copy for the batch
                self._nhwc[:count].copy_(self._staging[:count], non_blocking=True)
            view = self._nhwc[:count]
            view.mul_(self._scale).add_(self._shift)
        return self.batch[:count]
