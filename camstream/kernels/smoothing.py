"""Temporal smoothing of a stream's maps: the exponential moving average the pipeline and eval both apply, to a
classifier's one map per frame and to a detector's one map per box."""

from __future__ import annotations

import numpy as np

SAME_OBJECT_IOU = 0.5  # a box continues the previous frame's box of its label that it overlaps by at least this


class CamSmoother:
    """Exponential moving average of a stream's CAMs: s ← α·s + (1 − α)·cam (α = 0: off).

    A detector's boxes are smoothed each on its own (`smooth_boxes`): a box takes over the smoothed map of the
    previous frame's box it continues — the same label, IoU ≥ `SAME_OBJECT_IOU`, matched greedily best box
    first — and a box that continues none starts afresh."""

    def __init__(self, alpha: float) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError("smoothing alpha must be in [0, 1)")
        self.alpha = alpha
        self._state: np.ndarray | None = None
        self._boxes = np.empty((0, 4), np.float32)  # the previous frame's boxes, labels and smoothed maps
        self._labels = np.empty(0, np.int64)
        self._box_maps = np.empty((0, 0, 0), np.float32)

    def __call__(self, cam: np.ndarray) -> None:
        """Smooth `cam` in place."""
        if self.alpha == 0.0:
            return
        if self._state is None or self._state.shape != cam.shape:
            self._state = cam.copy()
            return
        self._state *= self.alpha
        self._state += (1.0 - self.alpha) * cam
        np.copyto(cam, self._state)

    def smooth_boxes(self, boxes: np.ndarray, labels: np.ndarray, cams: np.ndarray) -> None:
        """Smooth one frame's per-box maps `cams` (K, h, w) in place, for its `boxes` (K, 4: x1 y1 x2 y2) and
        `labels` (K,), best first; remembers them for the next frame."""
        if self.alpha == 0.0:
            return
        if len(self._boxes) and len(boxes) and self._box_maps.shape[1:] == cams.shape[1:]:
            overlaps = box_iou(boxes, self._boxes)
            overlaps[np.asarray(labels)[:, None] != self._labels[None, :]] = 0.0
            for index in range(len(boxes)):
                previous = int(np.argmax(overlaps[index]))
                if overlaps[index, previous] < SAME_OBJECT_IOU:
                    continue
                cams[index] = self.alpha * self._box_maps[previous] + (1.0 - self.alpha) * cams[index]
                overlaps[:, previous] = 0.0  # each previous box continues into one box at most
        self._boxes = np.array(boxes, np.float32).reshape(-1, 4)
        self._labels = np.array(labels, np.int64).reshape(-1)
        self._box_maps = np.array(cams, np.float32)


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of `first` (K, 4) with every box of `second` (P, 4): (K, P)."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    low = np.maximum(first[:, None, :2], second[None, :, :2])
    high = np.minimum(first[:, None, 2:], second[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0.0, None), axis=2)
    area_first = np.prod(np.clip(first[:, 2:] - first[:, :2], 0.0, None), axis=1)
    area_second = np.prod(np.clip(second[:, 2:] - second[:, :2], 0.0, None), axis=1)
    union = area_first[:, None] + area_second[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
