"""Robustness: how much a map moves when its input barely does.

Max-sensitivity (Yeh et al. 2019) perturbs one image with small uniform noise; temporal stability looks at
consecutive video frames, where the scene changes a little and the map should change about as little.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from camstream.eval.metric import Metric


class MaxSensitivity(Metric):
    """Max-sensitivity (Yeh et al. 2019, "On the (in)fidelity and sensitivity of explanations", NeurIPS):
    max_j ‖Φ(x + δ_j) − Φ(x)‖₂ over `samples` Monte-Carlo draws δ_j ~ U[−r, r] per pixel (images in [0, 1]),
    unnormalised as in the paper; `normalise` divides by ‖Φ(x)‖₂ (a relative change, comparable across sizes)."""

    name = "max_sensitivity"
    higher_is_better = False
    category = "robustness"
    value_range = (0.0, float("inf"))

    # 16 draws: on 24 shared balloon photos the mean (Grad-CAM, Recipro-CAM) rose 4.8-5.8 % from 4 to 8 draws,
    # 2.6-2.9 % from 8 to 12 and 1.0 % from 12 to 16 (a maximum only grows with draws: 0.1-0.6 % more to 20)
    def __init__(self, radius: float = 0.02, samples: int = 16, seed: int = 0, normalise: bool = False) -> None:
        self.radius, self.samples, self.seed, self.normalise = radius, samples, seed, normalise

    def noisy_inputs(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        """The perturbed copies of `images` (the same draws on every call), clipped to [0, 1], one at a time (16
        copies of a large image set at once would not fit)."""
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.samples):
            yield (images + (torch.rand(images.shape, generator=generator) * 2 - 1) * self.radius).clamp_(0, 1)

    def __call__(self, maps: np.ndarray, noisy_maps: list[np.ndarray]) -> np.ndarray:
        """maps (B, H, W) of the clean images and one such array per noisy copy → (B,)."""
        batch = maps.shape[0]
        clean = maps.reshape(batch, -1).astype(np.float64)
        norm = np.linalg.norm(clean, axis=1)
        change = np.stack([np.linalg.norm(m.reshape(batch, -1) - clean, axis=1) for m in noisy_maps]).max(0)
        if not self.normalise:
            return change
        return np.divide(change, norm, out=np.zeros(batch), where=norm > 1e-12)


class MaxSensitivityNormalised(MaxSensitivity):
    """Max-sensitivity divided by ‖Φ(x)‖₂: the map's relative change, comparable across methods and thresholds
    whose maps carry different mass (the unnormalised figure grows with it)."""

    name = "max_sensitivity_normalised"

    def __init__(self, radius: float = 0.02, samples: int = 16, seed: int = 0) -> None:
        super().__init__(radius, samples, seed, normalise=True)


class TemporalLag(Metric):
    """How many frames a smoothed map trails the raw ones: smoothed map t is fitted as a weighted sum of raw maps
    t, t − 1, …, t − `max_lag` (least squares with a small ridge, maps reduced to 28×28 first), and the lag is the
    centroid Σ k·w_k / Σ w_k of the (non-negative) weights. An exponential moving average of weight α trails by
    α / (1 − α) frames (1.5 at α = 0.6), a copy by 0, a copy k frames late by k."""

    name = "lag_frames"
    higher_is_better = False
    category = "robustness"
    value_range = (0.0, float("inf"))

    def __init__(self, max_lag: int = 8, side: int = 28) -> None:
        self.max_lag, self.side = max_lag, side

    def __call__(self, raw: np.ndarray, smoothed: np.ndarray) -> dict:
        """raw and smoothed maps (T, H, W) → the lag in frames and the fitted weights w_0 … w_K."""
        import cv2

        count = len(raw)
        reach = min(self.max_lag, count - 2)
        if reach < 1:
            return {self.name: 0.0, "weights": []}

        def reduced(maps: np.ndarray) -> np.ndarray:
            return np.stack([cv2.resize(m.astype(np.float32), (self.side, self.side), interpolation=cv2.INTER_AREA)
                             for m in maps]).reshape(count, -1).astype(np.float64)

        small_raw, small_smoothed = reduced(raw), reduced(smoothed)
        columns = [small_raw[reach - k:count - k].ravel() for k in range(reach + 1)]
        design = np.stack([*columns, np.ones_like(columns[0])], axis=1)  # and an intercept for the maps' level
        target = small_smoothed[reach:].ravel()
        gram = design.T @ design
        ridge = 1e-3 * np.trace(gram) / len(gram)
        weights = np.linalg.solve(gram + ridge * np.eye(len(gram)), design.T @ target)[:-1].clip(min=0)
        lag = float((np.arange(reach + 1) * weights).sum() / weights.sum()) if weights.sum() > 1e-12 else 0.0
        return {self.name: round(lag, 3), "weights": [round(float(w), 4) for w in weights]}


class TemporalStability(Metric):
    """Mean over consecutive frames of mean|M_t − M_{t−1}| / mean|I_t − I_{t−1}|: map change per unit of
    image change (maps and images in [0, 1]); lower is steadier. Transitions with no image change are skipped."""

    name = "temporal_instability"
    higher_is_better = False
    category = "robustness"
    value_range = (0.0, float("inf"))

    def __call__(self, frames: np.ndarray, maps: np.ndarray) -> dict[str, float]:
        """frames (T, H, W, 3) and maps (T, H, W) of one clip → the ratio and both mean changes."""
        map_change = np.abs(np.diff(maps.astype(np.float32), axis=0)).mean((1, 2))
        image_change = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean((1, 2, 3))
        moving = image_change > 1e-6
        ratio = float((map_change[moving] / image_change[moving]).mean()) if moving.any() else 0.0
        return {self.name: ratio, "map_change": float(map_change.mean()), "image_change": float(image_change.mean())}
