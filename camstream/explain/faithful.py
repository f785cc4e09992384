"""A threshold the model vouches for (`--threshold faithful[:R]`).

A fixed "top 10 %" or the seed paper's dynamic threshold is blind to the model: keeping the top 10 % of Grad-CAM
keeps 1.15× the full map's insertion AUC on balloon photos but 0.60× on cluttered indoor scenes, and the viewer
cannot tell which case they are looking at. The faithful threshold asks the model. For an explained frame and its
class c, each candidate P of `CANDIDATES` gives the frame kept only where the map is in its top P % (the rest
black, the baseline deletion uses); all candidates go through the model in **one batched forward**, and the
smallest P whose score keeps ≥ R × the whole frame's score p_c is shown. When none reaches R the largest
candidate is shown and flagged (`FaithfulChoice.reached` False): the map's top half does not carry the decision.
A class the model gives less than `SCORE_FLOOR` is flagged too: R × a score near zero is reached by almost any
region, so there is nothing for the model to vouch for.

The region is shown by the map value it was cut at (`FaithfulChoice.threshold`), not re-derived as a
percentage: under letterbox a percentage of the visible part would be another region than the one scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from camstream.kernels import KeptRegions

CANDIDATES = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0)  # the kept percentages tried, smallest first
NOT_FOR_DETECTORS = ("keeps a region of one map; a detector has a map per box: give dynamic, "
                     "none or a percentage")  # what run, explain and explain() say to a detector
SCORE_FLOOR = 0.05  # below it a class's score is too small to keep a share of (as eval's normalised AUCs)


@dataclass(frozen=True)
class FaithfulChoice:
    """What the search showed: `keep_percent` of the map, the map value it was cut at (`threshold`: shown where
    the map is above it), the share of the whole frame's class score that region alone keeps (`retained`, may
    exceed 1) and whether it reached the asked share."""

    keep_percent: float
    retained: float
    reached: bool
    threshold: float = float("-inf")


def choose(kept_scores: np.ndarray, full_score: float, ratio: float, candidates: tuple[float, ...] = CANDIDATES,
           thresholds: np.ndarray | None = None) -> FaithfulChoice:
    """The smallest candidate whose region keeps ≥ `ratio` × `full_score` (its `kept_scores` entry), else the
    largest, flagged; flagged also when `full_score` is below `SCORE_FLOOR`. `thresholds`: the map value each
    candidate was cut at."""
    retained = np.asarray(kept_scores, np.float64) / max(float(full_score), 1e-12)
    cuts = np.full(len(candidates), -np.inf) if thresholds is None else thresholds
    if full_score >= SCORE_FLOOR:
        for index, share in enumerate(retained):
            if share >= ratio:
                return FaithfulChoice(candidates[index], round(float(share), 4), True, float(cuts[index]))
    return FaithfulChoice(candidates[-1], round(float(retained[-1]), 4), False, float(cuts[-1]))


class FaithfulSearch:
    """The search for one stream or one image set: its masked batch is built in reused buffers (`KeptRegions`)
    and scored by `score(batch, class_id) -> class scores` — a backend's explain, or eval's scorer."""

    def __init__(self, ratio: float, candidates: tuple[float, ...] = CANDIDATES) -> None:
        self.ratio = ratio
        self.candidates = candidates
        self.regions = KeptRegions(candidates)

    def __call__(self, frame: np.ndarray, cam: np.ndarray, class_id: int, full_score: float,
                 score: Callable[[np.ndarray, int], np.ndarray]) -> FaithfulChoice:
        """Choose for `frame` (H, W, C, as the model takes it before normalising) explained by `cam` (h, w) for
        `class_id`, whose whole-frame score is `full_score`."""
        batch = self.regions(frame, cam)
        return choose(score(batch, class_id), full_score, self.ratio, self.candidates, self.regions.thresholds)

    def each(self, frames: np.ndarray, maps: np.ndarray, class_ids: list[int], full_scores: list[float],
             score: Callable[[np.ndarray, int], np.ndarray]) -> list[FaithfulChoice]:
        """The choice for each frame of `frames` (N, H, W, C) with its map, class and whole-frame score."""
        return [self(np.ascontiguousarray(frames[index]), maps[index], int(class_ids[index]),
                     float(full_scores[index]), score) for index in range(len(frames))]
