"""Localisation against ground-truth masks: pointing game and the overlap scores of a thresholded map."""

from __future__ import annotations

import cv2
import numpy as np

from camstream.eval.metric import Metric, top_fraction_masks


class PointingGame(Metric):
    """Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation backprop", IJCV): a hit (1) when
    the map's maximum lies within `tolerance` pixels of the ground truth (15 px in the paper), else a miss (0).

    Called with maps and truth of one size, the tolerance is in those pixels (the model input's). `at_image_scale`
    gives the paper's reading: the maximum is carried back onto each original image (through its `Placement`) and
    the tolerance is in the image's own pixels, against the truth at the image's own size."""

    name = "pointing_game"
    higher_is_better = True
    category = "localisation"
    reads_values = True

    def __init__(self, tolerance: float = 15.0) -> None:
        self.tolerance = tolerance

    def __call__(self, maps: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """maps (B, H, W) float, truth (B, H, W) bool → (B,) of 0/1."""
        hits = np.zeros(maps.shape[0])
        for index, (heat, true) in enumerate(zip(maps, truth, strict=True)):
            if not true.any():
                continue
            row, column = np.unravel_index(int(heat.argmax()), heat.shape)
            # Euclidean distance of every pixel to the nearest ground-truth pixel (0 inside it)
            distance = cv2.distanceTransform((~true).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            hits[index] = float(distance[row, column] <= self.tolerance)
        return hits


    def at_image_scale(self, maps: np.ndarray, near: list[np.ndarray], placements: list) -> np.ndarray:
        """maps (B, h, w) at the model input; `near[b]` the original image's pixels within `tolerance` of its truth
        (`near_truth`), `placements[b]` how it was placed on the input → (B,) of 0/1 (a maximum in letterbox
        padding misses)."""
        hits = np.zeros(len(maps))
        for index, (heat, close, placement) in enumerate(zip(maps, near, placements, strict=True)):
            row, column = np.unravel_index(int(heat.argmax()), heat.shape)
            point = placement.frame_point(int(row), int(column))
            hits[index] = float(point is not None and bool(close[point]))
        return hits

    def near_truth(self, truth: np.ndarray) -> np.ndarray:
        """The pixels of `truth`'s image (H, W) within `tolerance` of it (Euclidean), as bool."""
        distance = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return distance <= self.tolerance


class Energy(Metric):
    """Energy-based pointing game (Wang et al. 2020, "Score-CAM", CVPR workshops): the share of the map's mass
    inside the ground truth, Σ M·G / Σ M (negative values count as 0; an empty map scores 0). Threshold-free."""

    name = "energy"
    higher_is_better = True
    category = "localisation"
    reads_values = True

    def __call__(self, maps: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """maps (B, H, W) float, truth (B, H, W) bool → (B,)."""
        mass = maps.reshape(len(maps), -1).clip(min=0).astype(np.float64)
        return (mass * truth.reshape(len(truth), -1)).sum(1) / np.maximum(mass.sum(1), 1e-12)


class _Overlap(Metric):
    """Scores from the confusion counts of a binary explanation mask A against the ground truth G."""

    higher_is_better = True
    category = "localisation"

    def __call__(self, masks: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """masks, truth (B, H, W) bool → (B,); empty denominators score 0."""
        batch = masks.shape[0]
        a = masks.reshape(batch, -1)
        g = truth.reshape(batch, -1)
        both = np.logical_and(a, g).sum(1).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = self.score(both, a.sum(1).astype(np.float64), g.sum(1).astype(np.float64))
        return np.nan_to_num(score, nan=0.0, posinf=0.0)

    def score(self, both: np.ndarray, shown: np.ndarray, true: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class IoU(_Overlap):
    """|A ∩ G| / |A ∪ G|."""

    name = "iou"

    def score(self, both, shown, true):
        return both / (shown + true - both)


class Dice(_Overlap):
    """2 |A ∩ G| / (|A| + |G|)."""

    name = "dice"

    def score(self, both, shown, true):
        return 2 * both / (shown + true)


class Precision(_Overlap):
    """|A ∩ G| / |A|: how much of what is shown is right."""

    name = "precision"

    def score(self, both, shown, true):
        return both / shown


class Recall(_Overlap):
    """|A ∩ G| / |G|: how much of the object is shown."""

    name = "recall"

    def score(self, both, shown, true):
        return both / true


def precision_recall_curve(maps: np.ndarray, truth: np.ndarray,
                           keep_percents: tuple[float, ...] = (1, 2, 5, 10, 15, 20, 30, 40, 50, 70, 100)) -> dict:
    """Mean pixel precision and recall of the top-k % mask for each k in `keep_percents`."""
    precision, recall = Precision(), Recall()
    curve: dict[str, list[float]] = {"keep_percent": list(keep_percents), "precision": [], "recall": []}
    for keep in keep_percents:
        masks = top_fraction_masks(maps, keep / 100.0)
        curve["precision"].append(round(float(precision(masks, truth).mean()), 4))
        curve["recall"].append(round(float(recall(masks, truth).mean()), 4))
    return curve
