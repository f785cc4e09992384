"""Faithfulness: does the model's score follow the map? Insertion/deletion AUC (Petsiuk et al. 2018),
Average Drop and Increase in Confidence (Chattopadhay et al. 2018).

`predict` maps images in [0, 1] (B, 3, H, W) to class probabilities (B, classes); maps are (B, H, W) at the
image's size; `targets` (B,) are the explained classes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from camstream.eval.metric import Metric

Predict = Callable[[torch.Tensor], torch.Tensor]


def target_scores(predict: Predict, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Probability of each sample's target class."""
    with torch.inference_mode():
        return predict(images).gather(1, targets[:, None])[:, 0].double().numpy()


class _PixelCurve(Metric):
    """Score of the target class as the most salient pixels move from one image into another, in `steps`
    equal steps; the value is the area under that curve over the fraction moved (trapezoid rule)."""

    category = "faithfulness"

    def __init__(self, steps: int = 16) -> None:
        self.steps = steps
        self.curves: np.ndarray | None = None  # (B, steps + 1) of the last call, for plots

    def endpoints(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the pixels start as, what they become)."""
        raise NotImplementedError

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        batch, _, height, width = images.shape
        start, finish = self.endpoints(images)
        # rank[b, p] = position of pixel p in that sample's descending-saliency order
        order = np.argsort(-maps.reshape(batch, -1), axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(height * width)[None, :].repeat(batch, 0), axis=1)
        rank_t = torch.from_numpy(rank.reshape(batch, 1, height, width))
        curves = np.empty((batch, self.steps + 1))
        for step in range(self.steps + 1):
            moved = rank_t < round(step / self.steps * height * width)
            curves[:, step] = target_scores(predict, torch.where(moved, finish, start), targets)
        self.curves = curves
        return np.trapezoid(curves, dx=1.0 / self.steps, axis=1)


class InsertionAUC(_PixelCurve):
    """Pixels are inserted, most salient first, into a blurred copy: a faithful map makes the score rise fast."""

    name = "insertion_auc"
    higher_is_better = True

    def endpoints(self, images):
        return gaussian_blur(images, kernel_size=[31, 31], sigma=[10.0, 10.0]), images


class DeletionAUC(_PixelCurve):
    """Pixels are deleted (set to black), most salient first: a faithful map makes the score fall fast."""

    name = "deletion_auc"
    higher_is_better = False

    def endpoints(self, images):
        return images, torch.zeros_like(images)


class _MaskedScore(Metric):
    """Compares Y, the target score on the image, with O, the score on the image multiplied by the map."""

    category = "faithfulness"

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        full = target_scores(predict, images, targets)
        kept = target_scores(predict, images * torch.from_numpy(maps).float()[:, None], targets)
        return self.score(full, kept)

    def score(self, full: np.ndarray, kept: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class AverageDrop(_MaskedScore):
    """max(0, Y − O) / Y per sample."""

    name = "average_drop"
    higher_is_better = False

    def score(self, full, kept):
        return np.maximum(0.0, full - kept) / np.maximum(full, 1e-12)


class IncreaseInConfidence(_MaskedScore):
    """1 where O > Y, else 0."""

    name = "increase_in_confidence"
    higher_is_better = True

    def score(self, full, kept):
        return (kept > full).astype(np.float64)
