"""Temporal smoothing of a stream's maps: the exponential moving average the pipeline and eval both apply."""

from __future__ import annotations

import numpy as np


class CamSmoother:
    """Exponential moving average of a stream's CAMs: s ← α·s + (1 − α)·cam (α = 0: off)."""

    def __init__(self, alpha: float) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError("smoothing alpha must be in [0, 1)")
        self.alpha = alpha
        self._state: np.ndarray | None = None

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
