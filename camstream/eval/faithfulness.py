"""Faithfulness: does the model's score follow the map? Insertion/deletion AUC (Petsiuk et al. 2018),
insertion/deletion correlation, Average Drop and Increase in Confidence (Chattopadhay et al. 2018), ADCC
(Poppi et al. 2021); and what a thresholded map's shown region keeps of the score, on its own, at what area.

`predict` maps images in [0, 1] (B, 3, H, W) to class probabilities (B, classes); maps are (B, H, W) at the
image's size; `targets` (B,) are the explained classes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from camstream.eval.metric import Metric
from camstream.explain.faithful import SCORE_FLOOR

Predict = Callable[[torch.Tensor], torch.Tensor]


def target_scores(predict: Predict, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Probability of each sample's target class."""
    with torch.inference_mode():
        return predict(images).gather(1, targets[:, None])[:, 0].double().numpy()


_ORDER_CACHE: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # [(maps, order, rank)] of the last maps


def saliency_order(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank) of each map's pixels (B, H·W): order[b] lists pixels most salient first, rank[b, p] is
    pixel p's place in it. Ties (the zeros of a thresholded map) go in a fixed random order, so they are not
    taken from the top rows first: a stable sort of the pixels pre-shuffled by one fixed permutation. The last
    maps' answer is kept, so insertion and deletion of the same maps sort them once."""
    if _ORDER_CACHE and _ORDER_CACHE[0][0] is maps:
        return _ORDER_CACHE[0][1], _ORDER_CACHE[0][2]
    batch, pixels = len(maps), maps[0].size
    shuffle = np.argsort(np.random.default_rng(0).random(pixels))  # the fixed tie order
    order = shuffle[np.argsort(-maps.reshape(batch, -1)[:, shuffle], axis=1, kind="stable")]
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(pixels)[None, :].repeat(batch, 0), axis=1)
    _ORDER_CACHE[:] = [(maps, order, rank)]
    return order, rank


class _PixelCurve(Metric):
    """Score of the target class as the most salient pixels move from one image into another, in `steps`
    equal steps; the value is the area under that curve over the fraction moved (trapezoid rule).

    A perturbed image is scored once: calls on the same images (the thresholded variants of one map, other
    methods) remember each (image, class, set of moved pixels) they scored, so the shared first and last steps,
    and the steps a top-k % map shares with its full map, are not run again."""

    category = "faithfulness"

    def __init__(self, steps: int = 10) -> None:
        self.steps = steps
        self.curves: np.ndarray | None = None  # (B, steps + 1) of the last call, for plots
        self.step_mass: np.ndarray | None = None  # (B, steps): map mass of the pixels moved at each step
        self.last_maps: np.ndarray | None = None
        self.scored = 0  # perturbed images run through the model (the rest came from the memo)
        self._memo: dict[tuple[int, int, bytes], float] = {}
        self._memo_images: torch.Tensor | None = None
        self._endpoints: tuple[torch.Tensor, torch.Tensor] = (torch.empty(0), torch.empty(0))  # of _memo_images

    def endpoints(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the pixels start as, what they become)."""
        raise NotImplementedError

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        batch, _, height, width = images.shape
        if self._memo_images is not images:
            self._memo, self._memo_images, self._endpoints = {}, images, self.endpoints(images)
        start, finish = self._endpoints
        order, rank = saliency_order(maps)
        rank_t = torch.from_numpy(rank.reshape(batch, 1, height, width))
        curves = np.empty((batch, self.steps + 1))
        bounds = [round(step / self.steps * height * width) for step in range(self.steps + 1)]
        for step, bound in enumerate(bounds):
            moved = rank_t < bound
            curves[:, step] = self._scores(predict, start, finish, moved, targets)
        ordered = np.take_along_axis(maps.reshape(batch, -1), order, axis=1).astype(np.float64)
        cumulative = np.concatenate([np.zeros((batch, 1)), np.cumsum(ordered, axis=1)], axis=1)
        self.step_mass = np.diff(cumulative[:, bounds], axis=1)
        self.curves, self.last_maps = curves, maps
        return np.trapezoid(curves, dx=1.0 / self.steps, axis=1)


    def _scores(self, predict: Predict, start: torch.Tensor, finish: torch.Tensor, moved: torch.Tensor,
                targets: torch.Tensor) -> np.ndarray:
        """The target score of each image with its `moved` pixels taken from `finish`; remembered ones reused."""
        keys = [(index, int(targets[index]), hashlib.blake2b(np.packbits(moved[index].numpy()).tobytes(),
                                                             digest_size=16).digest()) for index in range(len(moved))]
        unknown = [index for index, key in enumerate(keys) if key not in self._memo]
        if unknown:
            picked = torch.tensor(unknown)
            fresh = target_scores(predict, torch.where(moved[picked], finish[picked], start[picked]), targets[picked])
            self._memo.update(zip((keys[index] for index in unknown), fresh.tolist(), strict=True))
            self.scored += len(unknown)
        return np.array([self._memo[key] for key in keys])


class InsertionAUC(_PixelCurve):
    """Pixels are inserted, most salient first, into a blurred copy: a faithful map makes the score rise fast.

    The blurred start is Petsiuk et al.'s (2018, "RISE", BMVC): a Gaussian of kernel 11 and σ = 5 px."""

    name = "insertion_auc"
    higher_is_better = True
    blur_kernel, blur_sigma = 11, 5.0

    def endpoints(self, images):
        blurred = gaussian_blur(images, kernel_size=[self.blur_kernel] * 2, sigma=[self.blur_sigma] * 2)
        return blurred, images


class DeletionAUC(_PixelCurve):
    """Pixels are deleted (set to black), most salient first: a faithful map makes the score fall fast."""

    name = "deletion_auc"
    higher_is_better = False

    def endpoints(self, images):
        return images, torch.zeros_like(images)


def row_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `a` with the same row of `b`; 0 where either row is constant."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    norm = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.divide((a * b).sum(1), norm, out=np.zeros(len(a)), where=norm > 1e-12)


class _CurveCorrelation(Metric):
    """Pearson correlation, per sample, between the map mass moved at each step of a pixel curve and the
    change of the score that step caused. Reuses the curve of the same maps when it was just drawn."""

    category = "faithfulness"
    value_range = (-1.0, 1.0)

    def __init__(self, curve: _PixelCurve) -> None:
        self.curve = curve

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        if self.curve.last_maps is not maps:
            self.curve(predict, images, maps, targets)
        return row_correlation(self.curve.step_mass, np.diff(self.curve.curves, axis=1))


class InsertionCorrelation(_CurveCorrelation):
    """IC: a faithful map puts its mass where insertion raises the score most (near +1)."""

    name = "insertion_correlation"
    higher_is_better = True


class DeletionCorrelation(_CurveCorrelation):
    """DC: a faithful map puts its mass where deletion lowers the score most, so mass and change are
    anti-correlated (near −1)."""

    name = "deletion_correlation"
    higher_is_better = False


class _NormalisedCurve(Metric):
    """The AUC of a pixel curve divided by the target's score on the unmodified image, p(x): the curve as a share
    of what the model gave the whole image, so images the model is unsure of weigh as much as the sure ones (a
    common variant of Petsiuk et al.'s raw-probability AUC; may exceed 1 when a partial image scores above the
    whole). Reuses the curve of the same maps when it was just drawn.

    An image whose p(x) is below `FLOOR` gets NaN, not a ratio: divided by a score near zero (0.0024 was seen for a
    forced class) one image reads 9.6 and outweighs all the others, so the mean of the rest is reported and the
    images left out are counted."""

    category = "faithfulness"
    value_range = (0.0, float("inf"))
    FLOOR = SCORE_FLOOR  # the faithful threshold's floor too: one figure for 'a score too small to share'

    def __init__(self, curve: _PixelCurve) -> None:
        self.curve = curve

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        if self.curve.last_maps is not maps:
            self.curve(predict, images, maps, targets)
        whole = target_scores(predict, images, targets)
        auc = np.trapezoid(self.curve.curves, dx=1.0 / self.curve.steps, axis=1)
        return np.where(whole >= self.FLOOR, auc / np.maximum(whole, 1e-12), np.nan)


class InsertionAUCNormalised(_NormalisedCurve):
    """Insertion AUC / p(x)."""

    name = "insertion_auc_normalised"
    higher_is_better = True


class DeletionAUCNormalised(_NormalisedCurve):
    """Deletion AUC / p(x)."""

    name = "deletion_auc_normalised"
    higher_is_better = False


class _MaskedScore(Metric):
    """Compares Y, the target score on the image, with O, the score on the image multiplied by the map.

    O of the last (model, images, maps, targets) is remembered for every masked score, so Average Drop, Increase
    in Confidence and ADCC's Average Drop run the masked images through the model once."""

    category = "faithfulness"
    _last: ClassVar[list[tuple]] = []  # [(predict, images, maps, targets, O)] of the last call, if any

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        return self.score(target_scores(predict, images, targets), self.kept(predict, images, maps, targets))

    @staticmethod
    def kept(predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        """O: the target score on images × maps."""
        if _MaskedScore._last:
            last_predict, last_images, last_maps, last_targets, scores = _MaskedScore._last[0]
            if (last_predict == predict and last_images is images and last_maps is maps  # ==: bound methods
                    and torch.equal(last_targets, targets)):
                return scores
        scores = target_scores(predict, images * torch.from_numpy(maps).float()[:, None], targets)
        _MaskedScore._last[:] = [(predict, images, maps, targets.clone(), scores)]
        return scores

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


class Adcc(Metric):
    """ADCC (Poppi et al. 2021): harmonic mean of coherency, 1 − complexity and 1 − Average Drop.

    coherency = (1 + pearson(L(x ⊙ L(x)), L(x))) / 2, complexity = mean(L(x)) for maps in [0, 1].
    `remapped` is the explainer's map of the image multiplied by its own map.
    """

    name = "adcc"
    higher_is_better = True
    category = "faithfulness"

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor,
                 remapped: np.ndarray) -> np.ndarray:
        batch = maps.shape[0]
        coherency = (1.0 + row_correlation(remapped.reshape(batch, -1), maps.reshape(batch, -1))) / 2.0
        complexity = maps.reshape(batch, -1).mean(1)
        drop = AverageDrop()(predict, images, maps, targets)
        parts = np.stack([coherency, 1.0 - complexity, 1.0 - drop])
        with np.errstate(divide="ignore"):
            return np.where((parts > 0).all(0), 3.0 / (1.0 / np.maximum(parts, 1e-12)).sum(0), 0.0)


class RegionScoreShare(Metric):
    """The share of the whole image's class score its map's shown region keeps alone: p_c(x ⊙ [M > 0]) / p_c(x),
    the rest black (deletion's baseline) — what `--threshold faithful` asks of the region it shows (may exceed 1).
    NaN (left out) where p_c(x) is below the normalised AUCs' floor: a share of a near-zero score is noise."""

    name = "region_score_share"
    higher_is_better = True
    category = "faithfulness"
    value_range = (0.0, float("inf"))

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        shown = torch.from_numpy(maps > 0)[:, None].to(images.dtype)
        whole = target_scores(predict, images, targets)
        share = target_scores(predict, images * shown, targets) / np.maximum(whole, 1e-12)
        return np.where(whole >= _NormalisedCurve.FLOOR, share, np.nan)


class RegionArea(Metric):
    """The share of the image the map's shown region covers, |M > 0| / |M| (the price of a region's score)."""

    name = "region_area"
    higher_is_better = False
    category = "faithfulness"

    def __call__(self, predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: torch.Tensor) -> np.ndarray:
        return (maps > 0).reshape(len(maps), -1).mean(1).astype(np.float64)
