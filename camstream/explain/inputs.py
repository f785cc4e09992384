"""What `explain()` accepts for images besides a normalised (B, C, H, W) tensor: NumPy arrays (H×W×3 or
B×H×W×3, uint8 RGB as PIL and `cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)` give them, or floats in [0, 1]) and
PIL images, one or a list; made into the normalised batch the model takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from camstream.errors import ModelError
from camstream.model.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard
from camstream.model.preprocess import Normaliser


def is_picture(value: Any) -> bool:
    """True for a PIL image or an H×W×3 / B×H×W×3 NumPy array, or a non-empty list of them."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(is_picture(item) and not isinstance(item, (list, tuple)) for item in value)
    if isinstance(value, np.ndarray):
        return value.ndim in (3, 4) and value.shape[-1] == 3
    return hasattr(value, "convert") and hasattr(value, "size")  # a PIL image, without importing PIL


def picture_batch(pictures: Any, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                  size: tuple[int, int] | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """`pictures` as a (B, 3, H, W) float32 batch: RGB scaled to [0, 1], resized (by area) to `size`
    (height, width) when given, then normalised as (x − mean) / std."""
    items = list(pictures) if isinstance(pictures, (list, tuple)) else [pictures]
    arrays: list[np.ndarray] = []
    for item in items:
        array = np.asarray(item.convert("RGB")) if not isinstance(item, np.ndarray) else item
        arrays.extend(array if array.ndim == 4 else [array])
    if size is not None:
        arrays = [cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_AREA) for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ModelError(f"explain(): images of different sizes {sorted(shapes)}: give input_size=(H, W)")
    stacked = np.stack(arrays)
    pixels = torch.from_numpy(stacked.astype(np.float32) / 255.0 if stacked.dtype == np.uint8
                              else stacked.astype(np.float32)).permute(0, 3, 1, 2)
    normalise = Normaliser(ModelCard(mean=tuple(mean), std=tuple(std)))
    return normalise(pixels).contiguous().to(device)
