"""The maps every figure is set beside: a random, a centred and a constant map, scored by the same metrics on the
same images and classes as the methods, and each method tested against the best of them, image by image.

A figure means something only beside what a map that knows nothing scores: on deletion a random map wins more
often than not (scattered pixels set to the baseline wreck any image fast), and a centred map is hard to beat
on photos whose object sits in the middle. `against_baselines` says, per metric, whether a method beats the
best baseline: better on average and a two-sided Wilcoxon signed-rank test of the per-image differences at
p < 0.05, with its win count and the matched-pairs rank-biserial correlation as the effect size.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("random", "centre", "constant")
BASELINE_NAMES = {"random": "a random map", "centre": "a centred map", "constant": "a constant map"}
# the figures set beside the baselines: faithfulness and localisation, each with its direction (True: higher wins)
COMPARED = {"road": True, "road_morf": False, "road_lerf": True, "insertion_auc": True, "deletion_auc": False,
            "insertion_auc_normalised": True, "deletion_auc_normalised": False, "pointing_game": True, "energy": True,
            "iou": True}
SIGNIFICANCE = 0.05


def baseline_maps(kind: str, count: int, size: tuple[int, int]) -> np.ndarray:
    """`count` maps of `size`: "random" (uniform noise, seed 0), "centre" (a Gaussian at the centre, σ a quarter
    of each side) or "constant" (all ones: every pixel tied, so a pixel order is the metric's tie order)."""
    height, width = size
    if kind == "random":
        return np.random.default_rng(0).random((count, height, width)).astype(np.float32)
    if kind == "constant":
        return np.ones((count, height, width), np.float32)
    if kind != "centre":
        raise ValueError(f"no baseline map '{kind}' ({', '.join(BASELINES)})")
    rows = np.exp(-0.5 * ((np.arange(height) - (height - 1) / 2) / (height / 4)) ** 2)
    columns = np.exp(-0.5 * ((np.arange(width) - (width - 1) / 2) / (width / 4)) ** 2)
    return np.repeat((rows[:, None] * columns[None, :]).astype(np.float32)[None], count, axis=0)


def _array(values: list[float | None]) -> np.ndarray:
    """Per-image figures as floats, an image left out (None) as NaN."""
    return np.array([np.nan if value is None else value for value in values], np.float64)


def against_baselines(per_image: dict[str, list[float]], baselines: dict[str, dict[str, list[float]]]) -> dict:
    """Per metric of `COMPARED` that both sides have: the method's mean, the best baseline (by mean, in the
    metric's direction) and its mean, the images where the method is better / worse, the Wilcoxon p of the
    differences, the rank-biserial correlation (+1: better on every image) and whether it `beats` the baseline;
    over the images that every side scores (a figure may leave some out: None)."""
    from scipy import stats

    compared = {}
    for metric, higher in COMPARED.items():
        ours = per_image.get(metric)
        scored = {kind: _array(values[metric]) for kind, values in baselines.items() if metric in values}
        if not ours or not scored:
            continue
        ours_array = _array(ours)
        kept = np.isfinite(ours_array) & np.all([np.isfinite(values) for values in scored.values()], axis=0)
        if not kept.any():  # every image left out (a normalised AUC whose class scores are all below its floor)
            continue
        ours_array, scored = ours_array[kept], {kind: values[kept] for kind, values in scored.items()}
        best = (max if higher else min)(scored, key=lambda kind: scored[kind].mean())
        better = (ours_array - scored[best]) * (1 if higher else -1)  # > 0: the method did better on that image
        entry = {"mean": round(float(ours_array.mean()), 4), "baseline": best,
                 "baseline_mean": round(float(scored[best].mean()), 4), "n": len(better),
                 "better": int((better > 0).sum()), "worse": int((better < 0).sum())}
        if len(better) >= 2 and np.any(better != 0):
            ranks = stats.rankdata(np.abs(better))
            entry["wilcoxon_p"] = float(stats.wilcoxon(better, zero_method="zsplit").pvalue)
            entry["rank_biserial"] = round(float((ranks[better > 0].sum() - ranks[better < 0].sum()) / ranks.sum()), 3)
        else:
            entry["wilcoxon_p"], entry["rank_biserial"] = 1.0, 0.0
        entry["beats"] = bool(better.mean() > 0 and entry["wilcoxon_p"] < SIGNIFICANCE)
        compared[metric] = entry
    return compared
