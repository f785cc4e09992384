"""ROAD — RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022).

Deletion sets the removed pixels to one value, and the removal's *shape* then tells the model more than the map
does: scattered single pixels wreck any image, so a random map wins deletion. ROAD fills each removed pixel by
**noisy linear imputation** instead — the weighted mean of its eight neighbours (1/6 for the four beside it,
1/12 for the four at its corners, over those inside the image), solved for all removed pixels at once as one
sparse linear system, plus Gaussian noise (σ = 0.01) — so what is left of the image leaks no shape.

For removal percentages k (20, 50 and 80 by default) the target's probability is taken on the image with
its top k % (MoRF, most relevant first: lower is better) or its bottom k % (LeRF: higher is better) imputed;
each figure is the mean over the percentages, and `road` = (LeRF − MoRF) / 2, higher is better (the combined
score of the paper's reference code). The map's pixels are ranked as deletion ranks them (ties in one fixed
random order).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import splu

from camstream.eval.faithfulness import Predict, saliency_order
from camstream.eval.metric import Metric

# three removal percentages: each image is imputed 3 × 2 times per map, ~0.3 s at 224 px on this machine's two
# cores (the solve of a hole of 80 % of the image takes 0.2 s)
ROAD_PERCENTS = (20, 50, 80)
NOISE = 0.01  # σ of the noise added to every imputed value (pixels in [0, 1])
_NEIGHBOURS = (((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
               ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12))


def impute(image: np.ndarray, removed: np.ndarray, noise: float = NOISE,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """`image` (C, H, W) with its `removed` pixels ((H, W) bool) replaced by noisy linear imputation: each the
    weighted mean of its in-image neighbours (known or imputed), all solved at once, plus N(0, `noise`²)."""
    channels, height, width = image.shape
    unknown = np.flatnonzero(removed.reshape(-1))
    if unknown.size == 0:
        return image.copy()
    flat = image.reshape(channels, -1).astype(np.float64)
    variable = np.full(height * width, -1, np.int64)
    variable[unknown] = np.arange(unknown.size)
    rows, columns = np.divmod(unknown, width)
    right_side = np.zeros((unknown.size, channels))
    weight_sum = np.zeros(unknown.size)
    entries_row, entries_column, entries_weight = [], [], []
    for (down, across), weight in _NEIGHBOURS:
        row, column = rows + down, columns + across
        inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
        weight_sum[inside] += weight
        at = np.flatnonzero(inside)
        neighbour = (row * width + column)[inside]
        other = variable[neighbour]
        known = other < 0
        right_side[at[known]] -= weight * flat[:, neighbour[known]].T
        entries_row.append(at[~known])
        entries_column.append(other[~known])
        entries_weight.append(np.full(int((~known).sum()), weight))
    entries_row.append(np.arange(unknown.size))
    entries_column.append(np.arange(unknown.size))
    entries_weight.append(-weight_sum)
    system = sparse.csc_matrix((np.concatenate(entries_weight), (np.concatenate(entries_row),
                                                                  np.concatenate(entries_column))),
                               shape=(unknown.size, unknown.size))
    # symmetric (a pixel weighs its neighbour as the neighbour weighs it): SuperLU's symmetric mode and ordering
    # solve it in about half the time of a general solve, to within 1e-13
    factors = splu(system, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    solved = factors.solve(right_side).reshape(unknown.size, channels)
    filled = flat.copy()
    filled[:, unknown] = solved.T
    if noise:
        filled[:, unknown] += noise * (rng or np.random.default_rng(0)).standard_normal((channels, unknown.size))
    return filled.reshape(image.shape).astype(image.dtype)


class _RoadCurve(Metric):
    """The target's probability with the top (MoRF) or bottom (LeRF) k % of each map imputed, for each k of
    `percents`; the value is its mean over them. The last call's per-percentage scores stay in `curves`."""

    category = "faithfulness"
    most_relevant_first: bool

    def __init__(self, percents: tuple[int, ...] = ROAD_PERCENTS, noise: float = NOISE) -> None:
        self.percents = percents
        self.noise = noise
        self.curves = np.zeros((0, len(percents)))
        self.last_maps: np.ndarray | None = None

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        order, _rank = saliency_order(maps)
        pixels = images.numpy()
        filled = np.empty((len(images), len(self.percents), *pixels.shape[1:]), pixels.dtype)
        count = order.shape[1]

        def fill(job: tuple[int, int]) -> None:
            index, place = job
            chosen = int(round(count * self.percents[place] / 100))
            picked = order[index, :chosen] if self.most_relevant_first else order[index, count - chosen:]
            removed = np.zeros(count, bool)
            removed[picked] = True
            # the same noise for every map of an image and percentage: only the map differs between methods
            rng = np.random.default_rng([index, self.percents[place]])
            filled[index, place] = impute(pixels[index], removed.reshape(maps.shape[1:]), self.noise, rng)

        jobs = [(index, place) for index in range(len(images)) for place in range(len(self.percents))]
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # SuperLU lets go of the GIL while it solves
            list(pool.map(fill, jobs))
        with torch.inference_mode():
            scores = predict(torch.from_numpy(filled.reshape(-1, *pixels.shape[1:])))
        wanted = targets.repeat_interleave(len(self.percents))
        self.curves = scores.gather(1, wanted[:, None])[:, 0].double().numpy().reshape(len(images), -1)
        self.last_maps = maps
        return self.curves.mean(1)


class RoadMostRelevantFirst(_RoadCurve):
    """ROAD MoRF: mean probability with the most relevant k % imputed (lower is better)."""

    name = "road_morf"
    higher_is_better = False
    most_relevant_first = True


class RoadLeastRelevantFirst(_RoadCurve):
    """ROAD LeRF: mean probability with the least relevant k % imputed (higher is better)."""

    name = "road_lerf"
    higher_is_better = True
    most_relevant_first = False


class Road(Metric):
    """(LeRF − MoRF) / 2 of the same maps (higher is better; in [−0.5, 0.5]); reuses both curves when they were
    just drawn for these maps."""

    name = "road"
    higher_is_better = True
    category = "faithfulness"
    value_range = (-0.5, 0.5)

    def __init__(self, morf: RoadMostRelevantFirst, lerf: RoadLeastRelevantFirst) -> None:
        self.morf, self.lerf = morf, lerf

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        for curve in (self.morf, self.lerf):
            if curve.last_maps is not maps:
                curve(predict, images, maps, targets)
        return (self.lerf.curves.mean(1) - self.morf.curves.mean(1)) / 2
