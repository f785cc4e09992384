"""Boundary F1: how well the outline of the thresholded map follows the outline of the ground truth."""

from __future__ import annotations

import cv2
import numpy as np

from camstream.eval.metric import Metric


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it. The image's edge is not a boundary (Csurka et al.): a mask
    that runs off the picture has no outline there."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(mask.astype(np.uint8), cross, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return mask & ~eroded.astype(bool)


class BoundaryF1(Metric):
    """Boundary F1 (Csurka et al. 2013, "What is a good evaluation measure for semantic segmentation?", BMVC):
    F1 of outline pixels matched within `tolerance` pixels (2 here),
    P = share of the map's outline within tolerance of the truth's outline, R the converse, F1 = 2PR/(P+R).
    """

    name = "boundary_f1"
    higher_is_better = True
    category = "localisation"

    def __init__(self, tolerance: int = 2) -> None:
        self.tolerance = tolerance

    def _near(self, edges: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Which pixels of `edges` lie within tolerance of a pixel of `other`."""
        distance = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 3)
        return edges & (distance <= self.tolerance)

    def __call__(self, masks: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """masks, truth (B, H, W) bool → (B,)."""
        scores = np.zeros(masks.shape[0])
        for index, (mask, true) in enumerate(zip(masks, truth, strict=True)):
            shown_edges, true_edges = outline(mask), outline(true)
            if not shown_edges.any() or not true_edges.any():
                continue
            precision = self._near(shown_edges, true_edges).sum() / shown_edges.sum()
            recall = self._near(true_edges, shown_edges).sum() / true_edges.sum()
            if precision + recall > 0:
                scores[index] = 2 * precision * recall / (precision + recall)
        return scores
